"""`multipy ipam gc`'s decisions (delegates/kube_ipam/gc.py), without etcd or an API server."""

from __future__ import annotations

import ipaddress

from delegates.kube_ipam.gc import GONE, LIVE, REPLACED, Pods, plan
from delegates.kube_ipam.records import DYNAMIC, FIXED, Lease, Owner


def ip(text):
    return ipaddress.ip_address(text)


def pod(namespace, name, uid, mirror=None):
    metadata = {"namespace": namespace, "name": name, "uid": uid}
    if mirror:
        metadata["annotations"] = {"kubernetes.io/config.mirror": mirror}
    return {"metadata": metadata}


def lease(addr, kind, pod_ref="", uid="", cid="", ifname=""):
    return Lease(ip(addr), "k8snet2", kind, pod_ref, uid, cid, ifname, revision=7)


def owner(cid, pod_ref, *addrs, ifname="net1"):
    return Owner(cid, ifname, "k8snet2", tuple(ip(a) for a in addrs), pod_ref, revision=9)


def verbs(todo):
    return sorted((d.verb, str(d.lease.ip)) for d in todo.decisions)


def test_pod_states():
    pods = Pods([pod("default", "web-1", "u1"), pod("kube-system", "etcd-node1", "api-uid", mirror="hash-1"),
                 {"metadata": {}}, "junk"])  # fmt: skip
    assert len(pods) == 2
    assert pods.state("default/web-1") == LIVE
    assert pods.state("default/web-1", "u1") == LIVE
    assert pods.state("default/web-1", "u0") == REPLACED
    assert pods.state("default/web-2", "u1") == GONE
    # A static pod: kubelet's UID is the mirror pod's annotation, not its API UID.
    assert pods.state("kube-system/etcd-node1", "hash-1") == LIVE
    assert pods.state("kube-system/etcd-node1", "api-uid") == LIVE


def test_attachments_of_gone_pods_are_released_as_a_del_would():
    leases = [
        lease("10.188.1.5", DYNAMIC, "default/web-1", "u1", "c-web1", "net1"),  # pod alive
        lease("10.188.1.6", DYNAMIC, "default/web-2", "u2", "c-web2", "net1"),  # pod gone
        lease("10.188.1.7", DYNAMIC, "default/web-3", "old", "c-web3", "net1"),  # pod recreated
        lease("10.188.0.218", FIXED, "default/database-1", "", "c-db1", "net1"),  # pod gone, container attached
        lease("10.188.0.219", FIXED, "default/database-2", "", "", ""),  # pod gone, no container
        lease("10.188.0.220", FIXED, "default/database-3", "x", "c-db3-old", "net1"),  # pod recreated
    ]
    owners = [owner("c-web1", "default/web-1", "10.188.1.5"), owner("c-web2", "default/web-2", "10.188.1.6"),
              owner("c-web3", "default/web-3", "10.188.1.7"), owner("c-db1", "default/database-1", "10.188.0.218"),
              owner("c-db3-old", "default/database-3", "10.188.0.220")]  # fmt: skip
    pods = Pods([pod("default", "web-1", "u1"), pod("default", "web-3", "new"), pod("default", "database-3", "y")])

    todo = plan(leases, owners, pods, include_fixed=False)
    assert [o.owner.container_id for o in todo.owners] == ["c-web2", "c-web3", "c-db1", "c-db3-old"]
    assert not any(o.drop_fixed for o in todo.owners)
    assert todo.removals == []
    assert verbs(todo) == [("detach", "10.188.0.218"), ("detach", "10.188.0.220"), ("keep", "10.188.0.219"),
                           ("release", "10.188.1.6"), ("release", "10.188.1.7")]  # fmt: skip
    reasons = {str(d.lease.ip): d.reason for d in todo.decisions}
    assert reasons["10.188.1.6"] == "pod default/web-2 is gone, container c-web2 on net1"
    assert reasons["10.188.1.7"].startswith("pod default/web-3 is another incarnation now (UID changed)")
    assert reasons["10.188.0.219"] == "pod default/database-2 is gone; fixed reservations stay without --include-fixed"

    todo = plan(leases, owners, pods, include_fixed=True)
    # The gone names' fixed addresses go; the recreated database-3 keeps its name's address.
    assert verbs(todo) == [("detach", "10.188.0.220"), ("release", "10.188.0.218"), ("release", "10.188.0.219"),
                           ("release", "10.188.1.6"), ("release", "10.188.1.7")]  # fmt: skip
    assert [str(d.lease.ip) for d in todo.removals] == ["10.188.0.219"]
    assert [o.drop_fixed for o in todo.owners] == [True, False, True, False]  # only gone names drop


def test_what_cannot_be_told_is_kept_and_said():
    leases = [lease("10.188.1.9", DYNAMIC, "", "", "podman-1", "eth1"), Lease(ip("10.188.1.10"), "", "unknown")]
    todo = plan(leases, [owner("podman-1", "", "10.188.1.9", ifname="eth1")], Pods([]), include_fixed=True)
    assert todo.owners == [] and todo.removals == []
    assert [(d.verb, d.reason) for d in todo.decisions] == [
        ("keep", "no pod recorded: whether it is in use cannot be told"),
        ("keep", "not a record multipy can read"),
    ]


def test_leases_without_an_index_and_indexes_whose_leases_moved_on():
    # A dynamic lease whose index is gone (an operator's hand) is released on its own; a fixed
    # lease that a newer container of the same pod took over is not touched by the old index.
    leases = [lease("10.188.1.11", DYNAMIC, "default/gone", "", "c-x", "net1"),
              lease("10.188.0.230", FIXED, "default/db", "", "c-new", "net1")]  # fmt: skip
    owners = [owner("c-old", "default/db", "10.188.0.230")]
    todo = plan(leases, owners, Pods([pod("default", "db", "u")]), include_fixed=False)
    assert verbs(todo) == [("release", "10.188.1.11")]
    assert [str(d.lease.ip) for d in todo.removals] == ["10.188.1.11"]
    assert todo.owners == []  # c-old's pod name is live and no UID says otherwise
