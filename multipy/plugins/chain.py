"""Running one network, a single conf or a conflist, as libcni runs a list.

Per plugin it injects name, cniVersion, runtimeConfig (declared capabilities
only) and prevResult, then calls the native plugin for that `type` or execs
the binary of that name from the search path.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from multipy.cni.errors import (
    DELEGATE_BAD_OUTPUT,
    DELEGATE_NOT_FOUND,
    INCOMPATIBLE_VERSION,
    INVALID_NETWORK_CONFIG,
    TRY_AGAIN_LATER,
    CNIError,
)
from multipy.cni.result import Result
from multipy.cni.version import supports_command

from . import binary
from .contract import DELEGATE_GROUP, IPAM_GROUP, Invocation, Services

if TYPE_CHECKING:
    from multipy.config.network import Network
    from multipy.log import Log

    from .binary import Exec
    from .registry import Registry

_METHODS = {"ADD": "add", "DEL": "delete", "CHECK": "check", "GC": "gc", "STATUS": "status"}


class CallObserver(Protocol):
    """Told of every plugin call the chain makes (a daemon's metrics): its type, command, how long
    it took and its error (None when it succeeded). Must be quick and must not raise."""

    def __call__(self, plugin_type: str, command: str, seconds: float, error: BaseException | None) -> None: ...


def build_conf(
    net: Network,
    plugin: dict,
    capability_args: dict | None = None,
    prev_result: Result | None = None,
    extra: dict | None = None,
    cni_args: dict | None = None,
) -> dict:
    """The stdin a runtime gives one plugin of `net` (libcni buildOneConfig).

    `cni_args` (a pod's per-network "cni-args") are merged into the plugin's args.cni, as Multus does.
    """
    # A deep copy, as a binary gets its own bytes: a native plugin that edits its conf must not
    # edit the conf shared with other plugins, requests or threads.
    conf = copy.deepcopy(plugin)
    if cni_args:
        args = dict(conf.get("args") or {})
        args["cni"] = {**(args.get("cni") or {}), **cni_args}
        conf["args"] = args
    conf["name"] = net.name
    conf["cniVersion"] = net.cni_version
    capabilities = plugin.get("capabilities") or {}
    runtime_config = {
        cap: value for cap, value in (capability_args or {}).items() if capabilities.get(cap) is True
    }
    if runtime_config:
        conf["runtimeConfig"] = runtime_config
    if prev_result is not None:
        conf["prevResult"] = prev_result.to_json(net.cni_version)
    if extra:
        conf.update(extra)
    return conf


class Chain:
    """Runs networks for the requests of one conf; never changed once built, so threads may share it.

    A choice that varies per request (the `binaryDelegates` a record says its ADD used) is a
    new view from `using_binaries`, never a change to this one. Native plugins get
    `plugin_services`: the shared clients, with IPAM and delegates run through this very chain
    (view), so a main plugin's IPAM sees the same binary-or-native choice as the main plugin.
    """

    def __init__(
        self,
        registry: Registry,
        services: Services,
        search_path: tuple[str, ...],
        timeout: float,
        log: Log,
        base_env: dict | None = None,
        binary_types: frozenset[str] = frozenset(),
        runner: Exec | None = None,
        deadline: float | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        # deadline: time.monotonic() by which the whole request must be done (a daemon's request
        # timeout), shared by every plugin it runs; a binary gets min(timeout, what is left).
        self.deadline = deadline
        self.observer = observer
        self.log = log
        self.registry = registry
        self.services = services  # shared: only read, never filled in
        self.search_path = search_path
        self.timeout = timeout
        self.base_env = base_env
        self.binary_types = frozenset(binary_types)
        self.runner = runner if runner is not None else binary.RawExec(log, base_env)
        self.plugin_services = replace(services, ipam=self.ipam, delegate=self.delegate)

    def using_binaries(self, binary_types) -> Chain:
        """This chain with `binary_types` run as binaries (what a record says its ADD used)."""
        wanted = frozenset(binary_types)
        if wanted == self.binary_types:
            return self
        return Chain(self.registry, self.services, self.search_path, self.timeout, self.log, self.base_env,
                     wanted, self.runner, self.deadline, self.observer)  # fmt: skip

    def time_left(self, command: str, what: str) -> float:
        """Seconds a binary may run: delegateTimeout, or less when the request's deadline is nearer.

        DEL is exempt: it is also an ADD's rollback, and an undo cut short leaks what it was to free."""
        if self.deadline is None or command == "DEL":
            return self.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise CNIError(TRY_AGAIN_LATER, f"the request's deadline passed before {what} could run")
        return min(self.timeout, left)

    def call(self, conf: dict, inv: Invocation) -> Result | None:
        """One plugin of a network (`conf` as build_conf made it), one command; ADD returns its Result."""
        return self._run(DELEGATE_GROUP, conf["type"], conf, inv)

    def delegate(self, inv: Invocation, conf: dict) -> Result | None:
        """Services.delegate: another main plugin by its `type`, as flannel runs bridge."""
        return self.call(conf, inv)

    def ipam(self, inv: Invocation, conf: dict) -> Result | None:
        """Run the IPAM plugin of a main plugin's `conf` (libcni DelegateAdd/Del/Check).

        Native main plugins reach this through `Services.ipam`. As with a binary
        delegate, the IPAM plugin gets the whole conf and the caller's CNI_* values.
        """
        ipam_type = (conf.get("ipam") or {}).get("type")
        if not ipam_type:
            raise CNIError(INVALID_NETWORK_CONFIG, "ipam.type is missing")
        return self._run(IPAM_GROUP, ipam_type, conf, inv)

    def native(self, group: str, plugin_type: str, conf: dict, inv: Invocation) -> Result | None:
        """Run the native plugin of `plugin_type` in `group`, never a binary."""
        factory = self.registry.find(group, plugin_type)
        if factory is None:
            raise CNIError(DELEGATE_NOT_FOUND, f"no native plugin of type {plugin_type!r} is installed")
        return self._call_native(factory, plugin_type, conf.get("cniVersion", "0.1.0"), conf, inv)

    def _run(self, group: str, plugin_type: str, conf: dict, inv: Invocation) -> Result | None:
        if self.observer is None:
            return self._run_one(group, plugin_type, conf, inv)
        started = time.monotonic()
        error: BaseException | None = None
        try:
            return self._run_one(group, plugin_type, conf, inv)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.observer(plugin_type, inv.command, time.monotonic() - started, error)

    def _run_one(self, group: str, plugin_type: str, conf: dict, inv: Invocation) -> Result | None:
        version = conf.get("cniVersion", "0.1.0")
        factory = None if plugin_type in self.binary_types else self.registry.find(group, plugin_type)
        if factory is not None:
            return self._call_native(factory, plugin_type, version, conf, inv)
        path = self.runner.find(plugin_type, self.search_path)
        inv = replace(inv, path=self.search_path)
        out = self.runner.run(path, inv, json.dumps(conf).encode(), self.time_left(inv.command, f"plugin {plugin_type}"))
        if inv.command != "ADD":
            return None
        try:
            doc = json.loads(out)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise CNIError(DELEGATE_BAD_OUTPUT, f"plugin {plugin_type} printed no JSON result for ADD: {out[:200]!r}")
        doc.setdefault("cniVersion", version)  # libcni fixupResultVersion
        return Result.from_json(doc).convert(version)

    def _call_native(self, factory, plugin_type: str, version: str, conf: dict, inv: Invocation) -> Result | None:
        self.time_left(inv.command, f"plugin {plugin_type}")  # a native call cannot be cut short: never start one late
        plugin = factory(self.plugin_services)
        if version not in plugin.supported_versions:
            raise CNIError(INCOMPATIBLE_VERSION, f"plugin {plugin_type} does not support config version {version!r}")
        inv = replace(inv, path=self.search_path)
        result = getattr(plugin, _METHODS[inv.command])(inv, conf)
        return result.convert(version) if inv.command == "ADD" and result is not None else None

    def add(self, net: Network, inv: Invocation, capability_args: dict, cni_args: dict | None = None) -> Result:
        result: Result | None = None
        for plugin in net.plugins:
            result = self.call(build_conf(net, plugin, capability_args, result, cni_args=cni_args), inv)
        assert result is not None  # a network has at least one plugin
        return result

    def delete(
        self, net: Network, inv: Invocation, capability_args: dict, prev: Result | None, cni_args: dict | None = None
    ) -> None:
        # libcni sends the cached result to DEL from 0.4.0 on; older plugins never saw one.
        prev = prev if prev is not None and supports_command(net.cni_version, "CHECK") else None
        for plugin in reversed(net.plugins):
            self.call(build_conf(net, plugin, capability_args, prev, cni_args=cni_args), inv)

    def check(
        self, net: Network, inv: Invocation, capability_args: dict, prev: Result, cni_args: dict | None = None
    ) -> None:
        if net.disable_check or not supports_command(net.cni_version, "CHECK"):
            return
        for plugin in net.plugins:
            self.call(build_conf(net, plugin, capability_args, prev, cni_args=cni_args), inv)

    def gc(self, net: Network, inv: Invocation, valid: list[dict]) -> None:
        if net.disable_gc or not supports_command(net.cni_version, "GC"):
            return
        # cni.dev/attachments is what libcni HEAD also sends (cni #1101).
        extra = {"cni.dev/valid-attachments": valid, "cni.dev/attachments": valid}
        for plugin in net.plugins:
            self.call(build_conf(net, plugin, extra=extra), inv)

    def status(self, net: Network, inv: Invocation) -> None:
        if not supports_command(net.cni_version, "STATUS"):
            return
        for plugin in net.plugins:
            self.call(build_conf(net, plugin), inv)
