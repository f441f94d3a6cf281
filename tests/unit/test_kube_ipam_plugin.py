"""kube-ipam in process against a real etcd and the local Kubernetes API: fixed and dynamic
reservations, recreation, conflicts, idempotency, DEL/GC/CHECK/STATUS and fail-closed errors.

etcd's content is read back with etcdctl, an independent client.
"""

from __future__ import annotations

import json

import pytest

from delegates.kube_ipam import KubeIpam
from multipy.cni.env import Environment
from multipy.cni.errors import (
    INVALID_NETWORK_CONFIG,
    STATUS_UNAVAILABLE,
    TRY_AGAIN_LATER,
    UNKNOWN_CONTAINER,
    CNIError,
)
from multipy.plugins.contract import Services
from multipy.testing.topology import SEED_KUBE_IPAM

DB = {"kube-ipam.netmask": "255.255.0.0", "kube-ipam.gateway": "10.188.0.1"}
PREFIX = "/multipy/ipam/"


@pytest.fixture
def world(etcd_server, kube_api):
    kube_api.add_pod("default", "database-1", annotations={"kube-ipam.ip": "10.188.0.218", **DB}, uid="uid-db1")
    kube_api.add_pod("default", "database-2", annotations={"kube-ipam.ip": "10.188.0.219", **DB}, uid="uid-db2")
    kube_api.add_pod("default", "web-1", uid="uid-web1")
    kube_api.add_pod("default", "web-2", uid="uid-web2")
    return World(etcd_server, kube_api)


class World:
    def __init__(self, etcd, api):
        self.etcd, self.api = etcd, api
        self.plugin = KubeIpam(Services())

    def conf(self, version="1.0.0", **ipam) -> dict:
        section = dict(SEED_KUBE_IPAM, etcdConfig=self.etcd.etcd_config(), kubeConfig=self.api.kubeconfig)
        section.update(ipam)
        return {"cniVersion": version, "name": "k8snet2", "type": "macvlan", "ipam": section}

    def inv(self, command, cid, pod=None, ifname="net1", extra=""):
        args = "IgnoreUnknown=1"
        if pod:
            uid = (self.api.pod("default", pod) or {}).get("metadata", {}).get("uid", "")
            args += f";K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_UID={uid}"
        if extra:
            args += f";{extra}"
        return Environment(command, cid, "/run/netns/x", ifname, args)

    def add(self, cid, pod=None, conf=None, **kw):
        result = self.plugin.add(self.inv("ADD", cid, pod, **kw), conf or self.conf())
        return [str(ipc.address) for ipc in result.ips], result

    def delete(self, cid, pod=None, conf=None, **kw):
        self.plugin.delete(self.inv("DEL", cid, pod, **kw), conf or self.conf())

    def keys(self) -> dict[str, dict]:
        return {k[len(PREFIX):]: json.loads(v) for k, v in self.etcd.keys(PREFIX).items()}

    def refused(self, cid, pod=None, conf=None, **kw) -> CNIError:
        before = self.keys()
        with pytest.raises(CNIError) as info:
            self.add(cid, pod, conf, **kw)
        assert self.keys() == before, "a refused ADD must leave etcd as it was"
        return info.value


POOL = "pools/10.188.0.0-16/"


def test_the_seed_scenario_fixed_ips_follow_the_pod_name(world):
    assert world.add("c-db1", "database-1")[0] == ["10.188.0.218/16"]
    ips, result = world.add("c-db2", "database-2")
    assert ips == ["10.188.0.219/16"]
    assert str(result.ips[0].gateway) == "10.188.0.1" and [str(r.dst) for r in result.routes] == ["0.0.0.0/0"]
    web = [world.add(f"c-web{n}", f"web-{n}")[0][0] for n in (1, 2)]
    assert all(w.startswith("10.188.") and w not in ("10.188.0.218/16", "10.188.0.219/16") for w in web)
    assert len(set(web)) == 2

    keys = world.keys()
    assert keys[POOL + "ips/10.188.0.219"] == {"network": "k8snet2", "kind": "fixed", "pod": "default/database-2",
                                              "podUID": "uid-db2", "containerID": "c-db2", "ifname": "net1"}
    assert keys[POOL + "owners/c-db2/net1"]["ips"] == ["10.188.0.219"]

    world.delete("c-db2", "database-2")
    keys = world.keys()
    assert keys[POOL + "ips/10.188.0.219"]["containerID"] == "" and POOL + "owners/c-db2/net1" not in keys
    # Recreated: a new container ID (and a new pod UID), the same name, the same address.
    world.api.add_pod("default", "database-2", annotations={"kube-ipam.ip": "10.188.0.219", **DB}, uid="uid-db2b")
    assert world.add("c-db2-new", "database-2")[0] == ["10.188.0.219/16"]
    assert world.keys()[POOL + "ips/10.188.0.219"]["podUID"] == "uid-db2b"

    for cid, pod in (("c-db1", "database-1"), ("c-db2-new", "database-2"), ("c-web1", "web-1"), ("c-web2", "web-2")):
        world.delete(cid, pod)
    left = world.keys()
    assert sorted(left) == [POOL + "ips/10.188.0.218", POOL + "ips/10.188.0.219"]
    assert all(v["containerID"] == "" and v["kind"] == "fixed" for v in left.values())


def test_a_late_del_of_the_old_container_never_releases_the_new_one(world):
    world.add("c-old", "database-2")
    # The node lost the old sandbox without a DEL; the recreated pod takes the name-bound address over.
    assert world.add("c-new", "database-2")[0] == ["10.188.0.219/16"]
    world.delete("c-old", "database-2")
    keys = world.keys()
    assert keys[POOL + "ips/10.188.0.219"]["containerID"] == "c-new"
    assert POOL + "owners/c-new/net1" in keys and POOL + "owners/c-old/net1" not in keys


def test_another_pod_asking_for_a_reserved_ip_is_told_the_owner(world):
    world.add("c-db1", "database-1")
    world.api.add_pod("default", "intruder", annotations={"kube-ipam.ip": "10.188.0.218"})
    err = world.refused("c-x", "intruder")
    assert err.code == TRY_AGAIN_LATER
    assert "10.188.0.218 is reserved for pod default/database-1 (container c-db1 on net1" in err.msg
    world.delete("c-db1", "database-1")
    err = world.refused("c-x", "intruder")
    assert "reserved by name" in err.msg and "multipy ipam release 10.188.0.218" in err.msg


@pytest.mark.parametrize(
    "annotations, fragment",
    [
        ({"kube-ipam.ip": "10.189.0.5"}, "not in subnet 10.188.0.0/16"),
        ({"kube-ipam.ip": "10.188.0.5"}, "outside the fixed range"),
        ({"kube-ipam.ip": "10.188.9.9"}, "outside the fixed range"),
        ({"kube-ipam.ip": "10.188.0.1"}, "is the gateway"),
        ({"kube-ipam.ip": "10.188.0.3x"}, 'annotation kube-ipam.ip: "10.188.0.3x" is not an IP address'),
        ({"kube-ipam.ip": "10.188.0.30", "kube-ipam.netmask": "255.255.0"}, "annotation kube-ipam.netmask"),
        ({"kube-ipam.ip": "10.188.0.30", "kube-ipam.netmask": "255.255.255.0"}, "gives /24 but subnet"),
    ],
)
def test_bad_annotations_are_refused_and_leave_nothing(world, annotations, fragment):
    world.api.add_pod("default", "bad", annotations=annotations)
    err = world.refused("c-bad", "bad")
    assert err.code == INVALID_NETWORK_CONFIG and fragment in err.msg, err.msg
    assert world.keys() == {}


def test_inside_the_dynamic_range_is_refused(world):
    world.api.add_pod("default", "bad", annotations={"kube-ipam.ip": "10.188.3.3"})
    err = world.refused("c-bad", "bad", conf=world.conf(fixedStart=None, fixedEnd=None))
    assert "inside the dynamic range" in err.msg


def test_annotations_from_the_runtime_skip_the_api(world):
    world.api.stop()
    conf = world.conf()
    conf["runtimeConfig"] = {"io.kubernetes.cri.pod-annotations": {"kube-ipam.ip": "10.188.0.219", **DB}}
    inv = Environment("ADD", "c-db2", "/run/netns/x", "net1",
                      "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=database-2")
    result = world.plugin.add(inv, conf)
    assert [str(i.address) for i in result.ips] == ["10.188.0.219/16"]
    assert world.keys()[POOL + "ips/10.188.0.219"]["pod"] == "default/database-2"
    # The same pod with empty annotations from the runtime gets a dynamic address, still without the API.
    conf["runtimeConfig"] = {"io.kubernetes.cri.pod-annotations": {}}
    result = world.plugin.add(Environment("ADD", "c-web", "/run/netns/x", "net1", "K8S_POD_NAMESPACE=default;"
                                          "K8S_POD_NAME=web-1"), conf)
    assert str(result.ips[0].address).startswith("10.188.") and result.ips[0].address.ip.packed[2] >= 1
    assert not [r for r in world.api.requests if "/pods/" in r.path]


def test_runtime_ip_requests_are_fixed_and_must_agree_with_the_annotation(world):
    assert world.add("c-ip", extra="IP=10.188.0.50")[0] == ["10.188.0.50/16"]
    conf = world.conf()
    conf["runtimeConfig"] = {"ips": ["10.188.0.51/16"]}
    assert world.add("c-ips", conf=conf)[0] == ["10.188.0.51/16"]
    err = world.refused("c-db1", "database-1", extra="IP=10.188.0.60")
    assert "asks for 10.188.0.218 but CNI_ARGS IP item 0 asks for 10.188.0.60" in err.msg
    assert world.add("c-db1", "database-1", extra="IP=10.188.0.218")[0] == ["10.188.0.218/16"]
    world.delete("c-ip")  # no pod: not name-bound, it goes with the container
    world.delete("c-ips")
    assert sorted(world.keys()) == [POOL + "ips/10.188.0.218", POOL + "owners/c-db1/net1"]


def test_a_repeated_add_returns_the_same_lease_and_del_is_idempotent(world):
    first = world.add("c-web1", "web-1")[0]
    assert world.add("c-web1", "web-1")[0] == first
    second = world.add("c-web1", "web-1", ifname="net2")[0]
    assert second != first
    world.delete("c-web1", "web-1")
    world.delete("c-web1", "web-1")
    world.delete("c-never")
    address = second[0].split("/")[0]
    assert sorted(world.keys()) == [POOL + f"ips/{address}", POOL + "owners/c-web1/net2"]
    world.delete("c-web1", "web-1", ifname="net2")
    assert world.keys() == {}


def test_two_networks_on_one_subnet_share_the_pool(world):
    other = world.conf(rangeStart="10.188.1.0", rangeEnd="10.188.1.3")
    other["name"] = "k8snet3"
    mine = world.conf(rangeStart="10.188.1.0", rangeEnd="10.188.1.3")
    got = [world.add(f"a{n}", conf=mine)[0][0] for n in range(2)] + [world.add(f"b{n}", conf=other)[0][0] for n in range(2)]
    # 10.188.1.1 is not the gateway (10.188.0.1 is): four addresses for four attachments of two networks.
    assert sorted(got) == ["10.188.1.0/16", "10.188.1.1/16", "10.188.1.2/16", "10.188.1.3/16"]
    with pytest.raises(CNIError) as info:
        world.add("a9", conf=mine)
    assert info.value.code == TRY_AGAIN_LATER and "no IP addresses available" in info.value.msg


def test_kube_ipam_legacy_records_count_as_taken(world):
    world.etcd.etcdctl("put", "/etcd-cni/networks/k8snet2/used/10.188.1.0", "legacy-container")
    world.etcd.etcdctl("put", "/etcd-cni/networks/k8snet2/used/10.188.1.1", "legacy-container")
    world.etcd.etcdctl("put", "/etcd-cni/networks/k8snet2/used/10.188.0.40", "legacy-fixed")
    small = world.conf(rangeStart="10.188.1.0", rangeEnd="10.188.1.2")
    assert world.add("c1", conf=small)[0] == ["10.188.1.2/16"]
    err = world.refused("c2", extra="IP=10.188.0.40")
    assert "in use by container legacy-fixed in kube-ipam's own records" in err.msg
    assert world.etcd.keys("/etcd-cni/")["/etcd-cni/networks/k8snet2/used/10.188.1.0"] == "legacy-container"


def test_gc_releases_attachments_the_runtime_no_longer_lists(world):
    world.add("c-db1", "database-1")
    world.add("c-web1", "web-1")
    world.add("c-web2", "web-2")
    other = world.conf()
    other["name"] = "k8snet3"
    world.add("c-elsewhere", conf=other)
    conf = world.conf("1.1.0")
    conf["cni.dev/valid-attachments"] = [{"containerID": "c-web2", "ifname": "net1"}]
    world.plugin.gc(Environment("GC"), conf)
    keys = world.keys()
    owners = sorted(k.split("/")[3] for k in keys if "/owners/" in k)
    assert owners == ["c-elsewhere", "c-web2"]  # other networks' attachments are not this GC's
    assert keys[POOL + "ips/10.188.0.218"]["containerID"] == ""
    with pytest.raises(CNIError, match="valid-attachments"):
        world.plugin.gc(Environment("GC"), world.conf("1.1.0"))


def test_check_verifies_the_reservation_against_prev_result(world):
    ips, result = world.add("c-db1", "database-1")
    conf = world.conf()
    conf["prevResult"] = result.to_json("1.0.0")
    world.plugin.check(world.inv("CHECK", "c-db1", "database-1"), conf)
    with pytest.raises(CNIError) as info:
        world.plugin.check(world.inv("CHECK", "c-other"), conf)
    assert info.value.code == UNKNOWN_CONTAINER
    conf["prevResult"]["ips"][0]["address"] = "10.188.0.99/16"
    with pytest.raises(CNIError, match="holds 10.188.0.218, which prevResult does not list"):
        world.plugin.check(world.inv("CHECK", "c-db1", "database-1"), conf)


def test_status_reports_etcd(world):
    world.plugin.status(Environment("STATUS"), world.conf("1.1.0"))
    world.etcd.stop_member(0)
    with pytest.raises(CNIError) as info:
        world.plugin.status(Environment("STATUS"), world.conf("1.1.0"))
    assert info.value.code == STATUS_UNAVAILABLE and "127.0.0.1" in info.value.msg


def test_etcd_down_fails_closed_with_11_naming_the_endpoint(world):
    world.etcd.stop_member(0)
    for call in (lambda: world.add("c-db1", "database-1"), lambda: world.add("c-web1", "web-1"),
                 lambda: world.delete("c-web1", "web-1")):
        with pytest.raises(CNIError) as info:
            call()
        assert info.value.code == TRY_AGAIN_LATER
        assert world.etcd.endpoints[0] in info.value.msg
    world.etcd.start_member(0)
    assert world.keys() == {}


def test_api_failures_fail_closed_and_never_fall_back_to_a_dynamic_ip(world):
    world.api.stop()
    err = world.refused("c-db1", "database-1")
    assert err.code == TRY_AGAIN_LATER and "database-1" in err.msg and "127.0.0.1" in err.msg
    world.api.start()
    world.api.fail_with(503)
    assert world.refused("c-db1", "database-1").code == TRY_AGAIN_LATER
    world.api.fail_with(None)
    world.api.reject_token()
    err = world.refused("c-db1", "database-1")
    assert err.code == INVALID_NETWORK_CONFIG and "were refused" in err.msg
    world.api.accept_token()
    err = world.refused("c-gone", "no-such-pod")
    assert err.code == UNKNOWN_CONTAINER and "default/no-such-pod does not exist" in err.msg
    err = world.refused("c-db1", "database-1", conf=world.conf(kubeConfig="/nonexistent/kubeconfig"))
    assert err.code == INVALID_NETWORK_CONFIG and "/nonexistent/kubeconfig" in err.msg
    assert world.keys() == {}


def test_a_sandbox_of_an_older_pod_incarnation_is_refused(world):
    inv = Environment("ADD", "c-stale", "/run/netns/x", "net1",
                      "K8S_POD_NAMESPACE=default;K8S_POD_NAME=database-2;K8S_POD_UID=uid-old")
    with pytest.raises(CNIError) as info:
        world.plugin.add(inv, world.conf())
    assert info.value.code == UNKNOWN_CONTAINER and "uid-db2" in info.value.msg


def test_a_bad_etcd_config_names_the_key(world, tmp_path):
    conf = world.conf(etcdConfig={"etcdURL": "https://127.0.0.1:2379", "etcdCertFile": str(tmp_path / "nope.pem"),
                                  "etcdKeyFile": str(tmp_path / "k.pem"), "etcdTrustedCAFileFile": str(tmp_path / "ca")})
    err = world.refused("c-web1", "web-1", conf=conf)
    assert err.code == INVALID_NETWORK_CONFIG and err.msg.startswith("ipam.etcdConfig.etcdTrustedCAFileFile: cannot read")
    conf = world.conf(etcdConfig={"etcdURL": "ftp://127.0.0.1:2379"})
    assert world.refused("c-web1", "web-1", conf=conf).msg.startswith("ipam.etcdConfig.etcdURL:")


def test_tls_with_client_certificates(etcd_tls_server, kube_api):
    world = World(etcd_tls_server, kube_api)
    kube_api.add_pod("default", "database-1", annotations={"kube-ipam.ip": "10.188.0.218", **DB})
    assert world.conf()["ipam"]["etcdConfig"]["etcdURL"].startswith("https://")
    assert world.add("c-db1", "database-1")[0] == ["10.188.0.218/16"]
    world.plugin.status(Environment("STATUS"), world.conf("1.1.0"))
    world.delete("c-db1", "database-1")
    assert list(world.keys()) == [POOL + "ips/10.188.0.218"]


def test_a_daemons_requests_share_its_pools_clients_and_never_close_them(world):
    """As a long-lived process runs it: a plugin built per request from Services holding the
    factories of one kept ClientPool. One etcd client and one API connection serve every request."""
    from multipy.clients.pool import ClientPool

    handed: dict[str, list] = {"etcd": [], "kube": []}
    with ClientPool() as kept:

        def factory(kind, pool_factory):
            def make(*args, **kwargs):
                handed[kind].append(pool_factory(*args, **kwargs))
                return handed[kind][-1]

            return make

        services = dict(etcd=factory("etcd", kept.etcd), kube=factory("kube", kept.kube))
        for n, pod in enumerate(("database-1", "web-1", "database-2")):
            inv = world.inv("ADD", f"c-{n}", pod)
            KubeIpam(Services(**services)).add(inv, world.conf())  # annotations read through the API
        KubeIpam(Services(**services)).delete(world.inv("DEL", "c-1", "web-1"), world.conf())
        assert len(handed["etcd"]) == 4 and len({id(c) for c in handed["etcd"]}) == 1
        assert handed["etcd"][0]._channels  # still connected: the plugin never closed it
        assert len(handed["kube"]) == 3 and len({id(c._api) for c in handed["kube"]}) == 1
