"""kube-ipam's pure decisions: fixed-address checks, who may hold an address, what a release writes."""

from __future__ import annotations

import ipaddress

import pytest
from test_kube_ipam_config import seed

from delegates.kube_ipam import annotations, config, rules
from delegates.kube_ipam.records import DYNAMIC, FIXED, Lease, Owner
from multipy.cni.errors import INVALID_NETWORK_CONFIG, TRY_AGAIN_LATER, CNIError

ip = ipaddress.ip_address


def cfg(**ipam):
    return config.load(seed(**ipam))


def check(values: dict, **ipam):
    request = annotations.parse({f"kube-ipam.{k}": v for k, v in values.items()})
    return rules.check_fixed(cfg(**ipam), request)


def refused(values: dict, **ipam) -> str:
    with pytest.raises(CNIError) as info:
        check(values, **ipam)
    assert info.value.code == INVALID_NETWORK_CONFIG
    return info.value.msg


def test_the_seed_databases_pass():
    for address in ("10.188.0.218", "10.188.0.219"):
        wanted, gateway = check({"ip": address, "netmask": "255.255.0.0", "gateway": "10.188.0.1"})
        assert [w.ip for w in wanted] == [ip(address)] and gateway == ip("10.188.0.1")


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"ip": "10.189.0.5"}, "annotation kube-ipam.ip: 10.189.0.5 is not in subnet 10.188.0.0/16 of network k8snet2"),
        ({"ip": "10.188.0.5"}, "10.188.0.5 is outside the fixed range fixedStart..fixedEnd (10.188.0.10-10.188.0.255)"),
        ({"ip": "10.188.7.7"}, "is outside the fixed range"),
        ({"ip": "10.188.0.218", "netmask": "255.255.255.0"}, "annotation kube-ipam.netmask '255.255.255.0': gives /24 but subnet 10.188.0.0/16"),
        ({"ip": "10.188.0.218/24"}, "gives /24 but subnet 10.188.0.0/16"),
        ({"ip": "10.188.0.218", "gateway": "10.188.0.254"}, "annotation kube-ipam.gateway: 10.188.0.254 differs from ipam.gateway 10.188.0.1"),
        ({"ip": "fd00::5/64"}, "fd00::5 is not in subnet"),
    ],
)
def test_refusals_name_the_source_and_the_rule(values, fragment):
    assert fragment in refused(values), refused(values)


def test_inside_the_dynamic_range():
    msg = refused({"ip": "10.188.5.5"}, fixedStart=None, fixedEnd=None)
    assert "10.188.5.5 is inside the dynamic range rangeStart..rangeEnd (10.188.1.0-10.188.255.254)" in msg


def test_network_broadcast_and_gateway_addresses():
    assert "is the network address" in refused({"ip": "10.188.0.0"}, fixedStart=None, fixedEnd=None)
    assert "is the gateway of 10.188.0.0/16" in refused({"ip": "10.188.0.1"}, fixedStart=None, fixedEnd=None)
    assert "is the broadcast address" in refused(
        {"ip": "10.188.255.255"}, fixedStart=None, fixedEnd=None, rangeEnd="10.188.200.0"
    )


def test_an_annotation_gateway_is_used_when_the_config_names_none():
    wanted, gateway = check({"ip": "10.188.0.218", "gateway": "10.188.0.254"}, gateway=None)
    assert gateway == ip("10.188.0.254")
    with pytest.raises(CNIError, match="is the gateway"):
        check({"ip": "10.188.0.254", "gateway": "10.188.0.254"}, gateway=None)
    assert "is not in subnet" in refused({"ip": "10.188.0.218", "gateway": "10.1.0.1"}, gateway=None)


def test_several_addresses_need_cni_0_3_0():
    conf = seed()
    conf["cniVersion"] = "0.2.0"
    request = annotations.parse({"kube-ipam.ip": "10.188.0.218,10.188.0.219"})
    with pytest.raises(CNIError, match="one address per family"):
        rules.check_fixed(config.load(conf), request)
    assert len(check({"ip": "10.188.0.218,10.188.0.219"})[0]) == 2


ME = rules.Claimant("k8snet2", "c2", "net1", "default/database-2", "uid-2")


def lease(**fields) -> Lease:
    base = {"ip": ip("10.188.0.219"), "network": "k8snet2", "kind": FIXED}
    base.update(fields)
    return Lease(**base)


def test_decide_free_mine_and_recreated_pod():
    address = ip("10.188.0.219")
    assert rules.decide_fixed(address, None, None, ME) is rules.Decision.CREATE
    assert rules.decide_fixed(address, lease(container_id="c2", ifname="net1"), None, ME) is rules.Decision.MINE
    unbound = lease(pod="default/database-2")
    assert rules.decide_fixed(address, unbound, None, ME) is rules.Decision.REBIND
    still_attached = lease(pod="default/database-2", container_id="c-old", ifname="net1")
    assert rules.decide_fixed(address, still_attached, None, ME) is rules.Decision.REBIND


def test_decide_conflicts_name_the_owner():
    address = ip("10.188.0.219")
    with pytest.raises(CNIError) as info:
        rules.decide_fixed(address, lease(pod="default/database-1", container_id="c1", ifname="net1"), None, ME,
                           "annotation kube-ipam.ip")
    assert info.value.code == TRY_AGAIN_LATER
    assert info.value.msg == ("annotation kube-ipam.ip: 10.188.0.219 is reserved for pod default/database-1 "
                              "(container c1 on net1 of network k8snet2), not for pod default/database-2")
    with pytest.raises(CNIError, match="no container attached now.*multipy ipam release 10.188.0.219"):
        rules.decide_fixed(address, lease(pod="default/database-1"), None, ME)
    with pytest.raises(CNIError, match="in use by container legacy-c in kube-ipam's own records"):
        rules.decide_fixed(address, None, "legacy-c", ME)
    # A pod-less claimant never takes over a name-bound reservation.
    anonymous = rules.Claimant("k8snet2", "c9", "net1")
    with pytest.raises(CNIError, match="not for container c9"):
        rules.decide_fixed(address, lease(pod="default/database-2"), None, anonymous)


def test_release_plan_unbinds_fixed_deletes_dynamic_and_keeps_others():
    owner = Owner("c1", "net1", "k8snet2", (ip("10.188.0.218"), ip("10.188.1.5"), ip("10.188.0.219"), ip("10.188.0.220")))
    fixed = lease(ip=ip("10.188.0.218"), pod="default/database-1", container_id="c1", ifname="net1", revision=7)
    dynamic = lease(ip=ip("10.188.1.5"), kind=DYNAMIC, container_id="c1", ifname="net1", revision=8)
    taken_over = lease(pod="default/database-1", container_id="c-new", ifname="net1", revision=9)
    plan = rules.release_plan(owner, [fixed, dynamic, taken_over, None])
    assert plan.unbind == (fixed,) and plan.delete == (dynamic,) and plan.keep == (taken_over,)
    assert plan.touched == (fixed, dynamic)
    # An IP= request without a pod is fixed but not name-bound: it goes with its container.
    static = lease(container_id="c1", ifname="net1")
    assert rules.release_plan(owner, [static]).delete == (static,)


def test_start_points_stay_in_the_dynamic_range_and_spread():
    rng = cfg().range
    starts = {rules.start_point(rng, f"c{n}", "net1") for n in range(500)}
    assert all(rng.start <= s <= rng.end for s in starts)
    assert len(starts) > 490
    assert rules.start_point(rng, "c1", "net1") == rules.start_point(rng, "c1", "net1")
    tiny = cfg(rangeStart="10.188.1.0", rangeEnd="10.188.1.0").range
    assert rules.start_point(tiny, "x", "net1") == ip("10.188.1.0")
