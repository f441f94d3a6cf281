"""flannel: turns flanneld's subnet.env into a bridge (or other) delegate conf and runs it.

Behaves as the flannel CNI plugin (flannel-io/cni-plugin): the `delegate` keys
with flannel's defaults (type bridge, ipMasq = !FLANNEL_IPMASQ, mtu = FLANNEL_MTU,
isGateway for a bridge), the top-level cniVersion and runtimeConfig, and an IPAM
(host-local unless `ipam.type` says otherwise) whose ranges are the node's subnet(s)
and whose routes gain the cluster network(s). The built conf is stored under
`dataDir/<containerID>` before the delegate runs, and DEL runs the delegate with
exactly those bytes, so a subnet.env that changed since (or is gone) cannot
strand a pod. The delegate runs through the chain: native if there is one (the
bridge in delegates/bridge), else the binary of that type.

Beyond the reference: CHECK runs the delegate's CHECK with the stored conf,
GC and STATUS exist (the reference has neither).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from multipy.cni.errors import (
    INTERNAL,
    INVALID_NETWORK_CONFIG,
    IO_FAILURE,
    STATUS_UNAVAILABLE,
    CNIError,
)
from multipy.cni.gc import valid_attachments
from multipy.cni.result import Result
from multipy.cni.version import SUPPORTED_VERSIONS, supports_command
from multipy.files import write_atomic
from multipy.plugins.contract import Invocation, Services

from . import flannel_env
from .flannel_env import SubnetEnv

if TYPE_CHECKING:
    from multipy.plugins.operator import Check, StatusProbe

DEFAULT_DATA_DIR = "/var/lib/cni/flannel"


@dataclass(frozen=True)
class FlannelConf:
    name: str
    cni_version: str
    subnet_file: str = flannel_env.DEFAULT_PATH
    data_dir: str = DEFAULT_DATA_DIR
    delegate: dict | None = None
    ipam: dict | None = None
    runtime_config: dict | None = None


def _invalid(message: str) -> CNIError:
    return CNIError(INVALID_NETWORK_CONFIG, f"flannel: {message}")


def _of_type(conf: dict, key: str, kind: type, default=None):
    value = conf.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise _invalid(f"{key} must be {'a string' if kind is str else 'an object'}, got {json.dumps(value)}")
    return value


def _data_dir(conf: dict) -> str:
    return _of_type(conf, "dataDir", str) or DEFAULT_DATA_DIR


def parse(conf: dict) -> FlannelConf:
    name = conf.get("name")
    if not isinstance(name, str) or not name:
        raise _invalid(f"name: the network name is missing or not a string: {json.dumps(name)}")
    delegate = _of_type(conf, "delegate", dict)
    if delegate is not None:
        if "type" in delegate and not isinstance(delegate["type"], str):
            raise _invalid("'delegate' dictionary, if present, must have (string) 'type' field")
        for key in ("name", "ipam"):
            if key in delegate:
                raise _invalid(f"'delegate' dictionary must not have '{key}' field, it'll be set by flannel")
    ipam = _of_type(conf, "ipam", dict)
    routes = (ipam or {}).get("routes")
    if routes is not None and not (isinstance(routes, list) and all(
            isinstance(r, dict) and isinstance(r.get("dst"), str) for r in routes)):
        raise _invalid(f"failed to parse ipam.routes: expected a list of {{\"dst\": ...}}, got {json.dumps(routes)}")
    return FlannelConf(
        name=name,
        cni_version=_of_type(conf, "cniVersion", str, ""),
        subnet_file=_of_type(conf, "subnetFile", str) or flannel_env.DEFAULT_PATH,
        data_dir=_data_dir(conf),
        delegate=delegate,
        ipam=ipam,
        runtime_config=_of_type(conf, "runtimeConfig", dict),
    )


def delegate_ipam(conf: FlannelConf, env: SubnetEnv) -> dict:
    ipam = copy.deepcopy(conf.ipam) if conf.ipam is not None else {}
    ipam.setdefault("type", "host-local")
    # The node's subnets replace whatever ranges the conf had; the cluster networks are routed.
    ipam["ranges"] = [[{"subnet": str(subnet)}] for subnet in (env.subnet, env.ipv6_subnet) if subnet is not None]
    ipam["routes"] = [*ipam.get("routes", []), *({"dst": str(n)} for n in (*env.networks, *env.ipv6_networks))]
    return ipam


def delegate_conf(conf: FlannelConf, env: SubnetEnv) -> dict:
    """The conf flannel hands its delegate (flannel_linux.go doCmdAdd)."""
    delegate = copy.deepcopy(conf.delegate) if conf.delegate is not None else {}
    if conf.runtime_config is not None:
        delegate["runtimeConfig"] = copy.deepcopy(conf.runtime_config)
    delegate["name"] = conf.name
    delegate.setdefault("type", "bridge")
    delegate.setdefault("ipMasq", not env.ipmasq)  # if flannel does not masquerade, the delegate should
    delegate.setdefault("mtu", env.mtu)
    if delegate["type"] == "bridge":
        delegate.setdefault("isGateway", True)
    if conf.cni_version:
        delegate["cniVersion"] = conf.cni_version
    delegate["ipam"] = delegate_ipam(conf, env)
    return delegate


# ---------------------------------------------------------------- the stored delegate confs, one per container


def _stored_path(data_dir: str, container_id: str) -> str:
    return os.path.join(data_dir, container_id)


def store(data_dir: str, container_id: str, delegate: dict) -> None:
    """Write the conf (0600) so that it is either all there or not there at all, even across a crash."""
    path = _stored_path(data_dir, container_id)
    # Sorted keys: the bytes Go's encoding of a map would give.
    data = json.dumps(delegate, sort_keys=True, separators=(",", ":")).encode()
    try:
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        # A dot-named temp file: gc() skips those, and no container ID starts with a dot.
        write_atomic(path, data, mode=0o600, tmp_prefix=".")
    except OSError as exc:
        raise CNIError(IO_FAILURE, f"flannel: failed to store the delegate conf at {path}: {exc.strerror}") from None


def stored(data_dir: str, container_id: str) -> dict | None:
    """The stored conf: None when there is none, {} when what is there cannot be a delegate conf."""
    try:
        with open(_stored_path(data_dir, container_id), "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) and isinstance(doc.get("type"), str) and doc["type"] else {}


def forget(data_dir: str, container_id: str) -> None:
    try:
        os.unlink(_stored_path(data_dir, container_id))
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------- the plugin


class Flannel:
    supported_versions = SUPPORTED_VERSIONS
    config_schema = os.path.join(os.path.dirname(__file__), "flannel.schema.json")  # the contract's

    def __init__(self, services: Services) -> None:
        self._delegate = services.delegate

    @staticmethod
    def status_checks(conf: dict, probe: StatusProbe) -> list[Check]:
        """`multipy status`: the subnet.env this network reads is there and complete."""
        from multipy.plugins.operator import Check

        path = conf.get("subnetFile") if isinstance(conf.get("subnetFile"), str) else ""
        path = path or flannel_env.DEFAULT_PATH
        subject = f"{conf.get('name', '')}: {path}"
        try:
            env = flannel_env.load(path)
        except CNIError as error:
            return [Check("subnet.env", subject, False, error.msg)]
        subnets = ", ".join(str(s) for s in (env.subnet, env.ipv6_subnet) if s is not None)
        networks = ", ".join(str(n) for n in (*env.networks, *env.ipv6_networks))
        return [Check("subnet.env", subject, True,
                      f"subnet {subnets} of {networks}, MTU {env.mtu}, IPMASQ {str(env.ipmasq).lower()}")]  # fmt: skip

    def delegate(self, inv: Invocation, conf: dict) -> Result | None:
        if self._delegate is None:
            raise CNIError(INTERNAL, "flannel: no delegate runner in the services")
        return self._delegate(inv, conf)

    def add(self, inv: Invocation, conf: dict) -> Result:
        fc = parse(conf)
        delegate = delegate_conf(fc, flannel_env.load(fc.subnet_file))
        # Stored first: a DEL after a failed or interrupted ADD must find what to undo.
        store(fc.data_dir, inv.container_id, delegate)
        try:
            result = self.delegate(inv, delegate)
        except CNIError as err:
            raise CNIError(err.code, f"failed to delegate add: {err.msg}", err.details) from None
        if result is None:
            raise CNIError(INTERNAL, f"failed to delegate add: {delegate['type']} returned no result")
        return result

    def delete(self, inv: Invocation, conf: dict) -> None:
        data_dir = _data_dir(conf)
        delegate = stored(data_dir, inv.container_id)
        if delegate is None:
            return  # never added, or already deleted
        if delegate:  # an unreadable conf cannot be undone; the file is dropped all the same
            self.delegate(inv, delegate)
        # Only after the delegate's DEL succeeded (the reference drops it either way): without
        # it a retried DEL would find nothing to do and the delegate's address would leak.
        forget(data_dir, inv.container_id)

    def check(self, inv: Invocation, conf: dict) -> None:
        data_dir = _data_dir(conf)
        delegate = stored(data_dir, inv.container_id)
        if not delegate:
            state = "no" if delegate is None else "an unreadable"
            raise CNIError(INTERNAL, f"flannel: {state} stored delegate conf for container {inv.container_id} "
                                     f"in {data_dir}")
        version = delegate.get("cniVersion") or "0.1.0"
        if not supports_command(version, "CHECK"):
            return
        if conf.get("prevResult"):
            delegate["prevResult"] = Result.from_json(conf["prevResult"]).to_json(version)
        self.delegate(inv, delegate)

    def gc(self, inv: Invocation, conf: dict) -> None:
        """Release what stale attachments of this network hold, then forget their stored confs."""
        fc = parse(conf)
        pairs = valid_attachments(conf)
        valid = [{"containerID": cid, "ifname": ifname} for cid, ifname in sorted(pairs)]
        live = {cid for cid, _ in pairs}
        mine = {}
        for entry in sorted(os.listdir(fc.data_dir)) if os.path.isdir(fc.data_dir) else ():
            if not entry.startswith("."):
                doc = stored(fc.data_dir, entry)
                if doc and doc.get("name") == fc.name:
                    mine[entry] = doc
        try:
            delegate = delegate_conf(fc, flannel_env.load(fc.subnet_file))
        except CNIError:
            if not mine:
                return  # flannel is down and nothing was ever added here: nothing to collect
            delegate = next(iter(mine.values()))  # flannel is down: any stored conf names the delegate
        delegate = dict(delegate, cniVersion=fc.cni_version or delegate.get("cniVersion"))
        delegate["cni.dev/valid-attachments"] = delegate["cni.dev/attachments"] = valid
        # The delegate's IPAM releases by (container, ifname), which flannel does not keep: it must collect first.
        self.delegate(inv, delegate)
        for container_id in mine:
            if container_id not in live:
                forget(fc.data_dir, container_id)

    def status(self, inv: Invocation, conf: dict) -> None:
        fc = parse(conf)
        try:
            env = flannel_env.load(fc.subnet_file)
        except CNIError as err:
            raise CNIError(STATUS_UNAVAILABLE, err.msg) from None
        self.delegate(inv, delegate_conf(fc, env))
