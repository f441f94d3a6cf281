"""multipy.ipam.allocator: host-local's round robin, requested addresses and its error texts."""

from __future__ import annotations

import random
from ipaddress import ip_address

import pytest

from multipy.cni.errors import INVALID_NETWORK_CONFIG, TRY_AGAIN_LATER, CNIError
from multipy.ipam.allocator import (
    candidates,
    exhausted_error,
    match_requests,
    next_free,
    place_requested,
    unavailable_error,
    unmatched_error,
)
from multipy.ipam.ranges import parse_range_set
from multipy.ipam.requests import Requested


def _set(*ranges, source="ipam.ranges[0]"):
    return parse_range_set(list(ranges), source)


def _ips(range_set, last=None) -> list[str]:
    return [str(c.ip) for c in candidates(range_set, ip_address(last) if last else None)]


def _seq(prefix: str, numbers) -> list[str]:
    return [f"{prefix}{n}" for n in numbers]


SMALL = _set({"subnet": "10.0.0.0/29"})  # hands out .2-.6: .1 is the gateway, .7 the broadcast


@pytest.mark.parametrize(
    "last, expected",
    [
        (None, [2, 3, 4, 5, 6]),
        ("10.0.0.4", [5, 6, 2, 3, 4]),  # after the last one, wrapping, the last one last
        ("10.0.0.6", [2, 3, 4, 5, 6]),  # the end wraps to the start
        ("10.0.0.1", [2, 3, 4, 5, 6]),  # the gateway is in the range: start after it
        ("10.0.0.7", [2, 3, 4, 5, 6]),  # not in the set (broadcast): from the start
        ("10.9.9.9", [2, 3, 4, 5, 6]),
        ("fd00::1", [2, 3, 4, 5, 6]),
    ],
)
def test_round_robin_in_one_range(last, expected):
    assert _ips(SMALL, last) == _seq("10.0.0.", expected)


def test_round_robin_across_ranges_skips_each_ranges_gateway():
    rs = _set(
        {"subnet": "10.0.0.0/29", "rangeStart": "10.0.0.4"},
        {"subnet": "10.0.1.0/29", "gateway": "10.0.1.3"},
    )
    assert _ips(rs) == _seq("10.0.0.", [4, 5, 6]) + _seq("10.0.1.", [1, 2, 4, 5, 6])
    assert _ips(rs, "10.0.0.6") == _seq("10.0.1.", [1, 2, 4, 5, 6]) + _seq("10.0.0.", [4, 5, 6])
    assert _ips(rs, "10.0.1.5") == ["10.0.1.6"] + _seq("10.0.0.", [4, 5, 6]) + _seq("10.0.1.", [1, 2, 4, 5])
    allocation = next(candidates(rs, ip_address("10.0.0.6")))
    assert str(allocation.address) == "10.0.1.1/29" and str(allocation.gateway) == "10.0.1.3"


def test_ipv6_has_no_broadcast_to_skip():
    rs = _set({"subnet": "fd00::/126"})
    assert _ips(rs) == ["fd00::2", "fd00::3"]
    assert str(next(candidates(rs)).address) == "fd00::2/126"


def test_a_range_holding_only_its_gateway_gives_nothing():
    rs = _set({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.1", "rangeEnd": "10.0.0.1"})
    assert _ips(rs) == []
    assert next_free(rs, None, set()) is None


def test_next_free_takes_a_set_or_a_predicate():
    taken = {ip_address("10.0.0.5"), ip_address("10.0.0.6")}
    assert str(next_free(SMALL, ip_address("10.0.0.4"), taken).ip) == "10.0.0.2"
    assert str(next_free(SMALL, ip_address("10.0.0.4"), lambda ip: ip in taken).ip) == "10.0.0.2"
    everything = {ip_address(f"10.0.0.{n}") for n in range(2, 7)}
    assert next_free(SMALL, None, everything) is None


class _GoRangeIter:
    """An independent model of Go's RangeIter (GetIter, then Next until nil), for cross-checking."""

    def __init__(self, range_set, last):
        self.ranges = range_set.ranges
        self.idx, self.cur, self.start = 0, None, None
        if last is not None and range_set.contains(last):
            self.idx = next(n for n, r in enumerate(self.ranges) if r.contains(last))
            self.cur = last
        else:
            self.start = self.ranges[0].start

    def next(self):
        r = self.ranges[self.idx]
        if self.cur is None:
            self.cur = self.start = r.start
            return self.next() if self.cur == r.gateway else self.cur
        if self.cur == r.end:
            self.idx = (self.idx + 1) % len(self.ranges)
            r = self.ranges[self.idx]
            self.cur = r.start
        else:
            self.cur += 1
        if self.start is None:
            self.start = self.cur
        elif self.cur == self.start:
            return None
        return self.next() if self.cur == r.gateway else self.cur

    def all(self):
        out = []
        while (ip := self.next()) is not None:
            out.append(ip)
        return out


@pytest.mark.parametrize("seed", range(40))
def test_candidates_match_a_model_of_gos_iterator(seed):
    rnd = random.Random(seed)
    ranges = []
    base = 0
    for _ in range(rnd.randint(1, 3)):
        base += rnd.randint(0, 2)
        subnet = f"10.{base}.0.0/28"
        start, end = sorted(rnd.sample(range(1, 15), 2))
        gateway = rnd.choice([None, start, end, rnd.randint(1, 14)])
        obj = {"subnet": subnet, "rangeStart": f"10.{base}.0.{start}", "rangeEnd": f"10.{base}.0.{end}"}
        if gateway is not None:
            obj["gateway"] = f"10.{base}.0.{gateway}"
        ranges.append(obj)
        base += 1
    rs = _set(*ranges)
    lasts = [None, ip_address("192.0.2.1")] + [ip_address(f"10.{b}.0.{h}") for b in range(base + 1) for h in range(16)]
    for last in lasts:
        assert [c.ip for c in candidates(rs, last)] == _GoRangeIter(rs, last).all(), (ranges, last)


# ---- requested addresses --------------------------------------------------------


def test_place_requested():
    rs = _set({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10", "rangeEnd": "10.0.0.20"})
    allocation = place_requested(rs, ip_address("10.0.0.15"))
    assert str(allocation.address) == "10.0.0.15/24" and str(allocation.gateway) == "10.0.0.1"
    with pytest.raises(CNIError) as info:
        place_requested(rs, ip_address("10.0.0.30"))
    assert (info.value.code, info.value.msg) == (
        INVALID_NETWORK_CONFIG,
        "requested IP address 10.0.0.30 is not in range set 10.0.0.10-10.0.0.20",
    )
    with pytest.raises(CNIError) as info:
        place_requested(_set({"subnet": "10.0.0.0/24"}), ip_address("10.0.0.1"))
    assert info.value.msg.startswith("requested ip 10.0.0.1 is subnet's gateway")


def _req(ip, source="args.cni.ips[0]"):
    return Requested(ip_address(ip), source)


def test_match_requests_gives_each_set_its_first_request():
    v4 = _set({"subnet": "10.0.0.0/24"})
    v6 = _set({"subnet": "fd00::/64"}, source="ipam.ranges[1]")
    v4b = _set({"subnet": "10.0.1.0/24"}, source="ipam.ranges[2]")
    requests = [_req("fd00::5", "CNI_ARGS IP item 0"), _req("10.0.0.5"), _req("10.0.0.6", "runtimeConfig.ips[0]")]
    chosen, left = match_requests([v4, v6, v4b], requests)
    assert [c.ip if c else None for c in chosen] == [ip_address("10.0.0.5"), ip_address("fd00::5"), None]
    assert left == [requests[2]]
    error = unmatched_error([v4, v6, v4b], chosen, left)
    assert error.code == INVALID_NETWORK_CONFIG
    assert error.msg == (
        "failed to allocate all requested IPs: 10.0.0.6: 10.0.0.6 from runtimeConfig.ips[0] was not used: "
        "range set 0 already gets 10.0.0.5, and a set gives one address"
    )


def test_unmatched_error_lists_the_sets_for_an_address_outside_them():
    v4 = _set({"subnet": "10.0.0.0/24"})
    chosen, left = match_requests([v4], [_req("10.9.0.1", "CNI_ARGS IP item 0")])
    assert chosen == [None]
    assert unmatched_error([v4], chosen, left).msg == (
        "failed to allocate all requested IPs: 10.9.0.1: 10.9.0.1 from CNI_ARGS IP item 0 is not in any range set "
        "(10.0.0.1-10.0.0.254)"
    )


def test_store_state_errors_are_retryable_and_worded_as_host_local():
    rs = _set({"subnet": "10.0.0.0/29"})
    assert (exhausted_error(rs).code, exhausted_error(rs).msg) == (
        TRY_AGAIN_LATER,
        "no IP addresses available in range set: 10.0.0.1-10.0.0.6",
    )
    err = unavailable_error(ip_address("10.0.0.3"), rs, "c9/eth0")
    assert (err.code, err.msg) == (
        TRY_AGAIN_LATER,
        "requested IP address 10.0.0.3 is not available in range set 10.0.0.1-10.0.0.6 (held by c9/eth0)",
    )
    assert unavailable_error(ip_address("10.0.0.3"), rs).msg.endswith("10.0.0.1-10.0.0.6")
