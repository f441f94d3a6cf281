"""Chain: per-request choices are views, never changes to the shared chain or its Services."""

from __future__ import annotations

import threading

from multipy.cni.result import Interface, Result
from multipy.cni.version import SUPPORTED_VERSIONS
from multipy.config.network import from_dict
from multipy.plugins import binary
from multipy.plugins.chain import Chain
from multipy.plugins.contract import DELEGATE_GROUP, IPAM_GROUP, Invocation, Services
from multipy.plugins.registry import Registry
from multipy.testing.fake_delegates import FakeDelegates


class Quiet:
    def debug(self, *a): ...

    info = warning = error = exception = debug


class Main:
    """A native main plugin that only runs its IPAM, through the Services it was made with."""

    supported_versions = SUPPORTED_VERSIONS

    def __init__(self, services: Services) -> None:
        self.services = services

    def add(self, inv, conf):
        result = self.services.ipam(inv, conf)
        result.interfaces = [Interface(inv.ifname)]
        return result

    def delete(self, inv, conf):
        self.services.ipam(inv, conf)


class NativeIpam:
    supported_versions = SUPPORTED_VERSIONS

    def __init__(self, services: Services) -> None:
        pass

    def add(self, inv, conf):
        return Result.from_json({"cniVersion": conf["cniVersion"], "ips": [{"address": "192.0.2.1/24"}]})

    def delete(self, inv, conf):
        return None


NET = from_dict({"cniVersion": "1.0.0", "name": "n", "type": "test-main", "ipam": {"type": "test-ipam"}})


def chain(fake: FakeDelegates, services: Services) -> Chain:
    registry = Registry(extra={DELEGATE_GROUP: {"test-main": Main}, IPAM_GROUP: {"test-ipam": NativeIpam}})
    return Chain(registry, services, ("/fake",), 5.0, Quiet(), runner=fake)


def test_a_view_is_a_new_chain_and_the_shared_one_is_unchanged():
    shared = Services()
    base = chain(FakeDelegates(), shared)
    view = base.using_binaries(["test-ipam"])
    assert view is not base and view.binary_types == {"test-ipam"}
    assert base.binary_types == frozenset()
    assert base.using_binaries([]) is base  # nothing to change: no new chain
    assert (view.registry, view.services, view.runner) == (base.registry, base.services, base.runner)
    # Native plugins reach IPAM through their own chain; the shared Services are never filled in.
    assert shared.ipam is None and shared.delegate is None
    assert view.plugin_services.ipam == view.ipam and base.plugin_services.ipam == base.ipam


def test_the_default_exec_runs_real_binaries():
    runner = Chain(Registry(extra={}), Services(), ("/x",), 5.0, Quiet(), base_env={"A": "1"}).runner
    assert runner == binary.RawExec(runner.log, {"A": "1"})


def test_concurrent_requests_each_get_their_own_ipam_choice():
    """Half the requests run IPAM as a binary (their record says so), half natively, at once."""
    fake = FakeDelegates()
    base = chain(fake, Services())
    errors: list[BaseException] = []
    got: dict[str, str] = {}

    def run(n: int) -> None:
        try:
            view = base.using_binaries(["test-ipam"] if n % 2 else [])
            result = view.add(NET, Invocation("ADD", f"c{n}", "/ns", "eth0"), {})
            got[f"c{n}"] = str(result.ips[0].address)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    native = {c for c, ip in got.items() if ip == "192.0.2.1/24"}
    assert native == {f"c{n}" for n in range(0, 40, 2)}
    assert {c.container_id for c in fake.calls} == {f"c{n}" for n in range(1, 40, 2)}
    assert all(c.plugin_type == "test-ipam" for c in fake.calls)


def test_services_delegate_runs_another_main_plugin_through_the_chain():
    fake = FakeDelegates()
    base = chain(fake, Services())
    inv = Invocation("ADD", "c1", "/ns", "eth0")
    result = base.plugin_services.delegate(inv, {"cniVersion": "1.0.0", "name": "n", "type": "bin-main"})
    assert fake.commands() == [("bin-main", "ADD")] and result.interfaces[0].name == "eth0"
