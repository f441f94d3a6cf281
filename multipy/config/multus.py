"""The meta plugin's own conf (10-multus.conf): loading, checking and its model."""

from __future__ import annotations

from dataclasses import dataclass

from multipy.cni.env import validate_ifname
from multipy.cni.errors import CNIError

from . import confdir, network, schema
from .problems import ConfigError, Problem, child

DEFAULT_CONF_DIR = "/etc/cni/multus/net.d"
DEFAULT_CNI_DIR = "/var/lib/cni/multipy"
DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_DELEGATE_TIMEOUT = 90.0  # seconds; kubelet gives the whole sandbox 4 minutes
DEFAULT_READINESS_TIMEOUT = 45.0  # Multus polls its readiness file this long

# Keys a runtime adds per request; they are not the operator's and vary per pod.
RUNTIME_KEYS = ("runtimeConfig", "prevResult", "args")


@dataclass(frozen=True)
class Delegate:
    network: network.Network
    master: bool
    interface: str | None = None  # the ifname the delegate asks for, if any


@dataclass(frozen=True)
class MultusConf:
    cni_version: str
    name: str
    delegates: tuple[Delegate, ...]
    kubeconfig: str | None = None
    conf_dir: str = DEFAULT_CONF_DIR
    cni_dir: str = DEFAULT_CNI_DIR
    bin_dir: str = DEFAULT_BIN_DIR
    log_file: str | None = None
    log_level: str = "panic"
    log_to_stderr: bool = False
    readiness_file: str | None = None
    readiness_timeout: float = DEFAULT_READINESS_TIMEOUT
    delegate_timeout: float = DEFAULT_DELEGATE_TIMEOUT
    # Types run from binDir/CNI_PATH even where a native plugin of that name exists (keep a Go bridge, say).
    binary_types: frozenset[str] = frozenset()

    @property
    def master(self) -> Delegate:
        return next(d for d in self.delegates if d.master)


def operator_part(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in RUNTIME_KEYS and not k.startswith("cni.dev/")}


def _runtime_problems(doc: dict) -> list[Problem]:
    return [
        Problem(child("$", k), f"{doc[k]!r} is not an object")
        for k in RUNTIME_KEYS
        if k in doc and not isinstance(doc[k], dict)
    ]


def _shape_problems(doc: dict) -> list[Problem]:
    """Rules across keys, which the schema states badly."""
    found = []
    has_delegates, has_cluster = "delegates" in doc, "clusterNetwork" in doc
    if has_delegates == has_cluster:
        found.append(Problem("$", "exactly one of 'delegates' or 'clusterNetwork' must be set"))
    if "defaultNetworks" in doc and not has_cluster:
        found.append(Problem("$.defaultNetworks", "needs 'clusterNetwork'"))
    masters = [i for i, d in enumerate(doc.get("delegates") or []) if isinstance(d, dict) and d.get("masterplugin") is True]
    if len(masters) > 1:
        found.append(
            Problem(
                "$.delegates",
                f'more than one delegate has "masterplugin": true ({", ".join(f"delegates[{i}]" for i in masters)})',
            )
        )
    return found


def _resolve(doc: dict) -> tuple[Delegate, ...]:
    version = doc["cniVersion"]
    if "delegates" in doc:
        delegates = []
        flagged = any(isinstance(d, dict) and d.get("masterplugin") is True for d in doc["delegates"])
        for index, entry in enumerate(doc["delegates"]):
            path = child("$.delegates", index)
            master = entry.get("masterplugin") is True if flagged else index == 0
            delegates.append(Delegate(network.from_dict(entry, path, version), master, entry.get("interface")))
        return tuple(delegates)
    conf_dir = doc.get("confDir", DEFAULT_CONF_DIR)
    refs = [("$.clusterNetwork", doc["clusterNetwork"])]
    refs += [(child("$.defaultNetworks", i), r) for i, r in enumerate(doc.get("defaultNetworks", []))]
    return tuple(
        Delegate(confdir.find(ref, conf_dir, version, path), master=(i == 0)) for i, (path, ref) in enumerate(refs)
    )


def _interface_problems(delegates: tuple[Delegate, ...]) -> list[Problem]:
    found: list[Problem] = []
    seen: dict[str, int] = {}
    for index, delegate in enumerate(delegates):
        if delegate.interface is None:
            continue
        path = f"$.delegates[{index}].interface"
        if delegate.master:
            found.append(Problem(path, "the master always gets the runtime's CNI_IFNAME"))
            continue
        try:
            validate_ifname(delegate.interface, f"delegates[{index}].interface")
        except CNIError as err:
            found.append(Problem(path, err.msg))
        if delegate.interface in seen:
            found.append(Problem(path, f"{delegate.interface!r} is already used by delegates[{seen[delegate.interface]}]"))
        seen[delegate.interface] = index
    return found


def _check(doc, stamp_dir: str | None) -> tuple[list[Problem], tuple[Delegate, ...]]:
    if not isinstance(doc, dict):
        return [Problem("$", "the configuration must be a JSON object")], ()
    found = schema.validate_cached(operator_part(doc), stamp_dir) + _runtime_problems(doc) + _shape_problems(doc)
    if found:
        return found, ()
    try:
        delegates = _resolve(doc)
    except ConfigError as err:
        return err.problems, ()
    return _interface_problems(delegates), delegates


def problems(doc, stamp_dir: str | None = None) -> list[Problem]:
    """Every problem in a conf, for `multipy validate` and for load()."""
    return _check(doc, stamp_dir)[0]


def load(doc: dict, stamp_dir: str | None = None) -> MultusConf:
    found, delegates = _check(doc, stamp_dir)
    if found:
        raise ConfigError(found)
    return MultusConf(
        cni_version=doc["cniVersion"],
        name=doc["name"],
        delegates=delegates,
        kubeconfig=doc.get("kubeconfig"),
        conf_dir=doc.get("confDir", DEFAULT_CONF_DIR),
        cni_dir=doc.get("cniDir", DEFAULT_CNI_DIR),
        bin_dir=doc.get("binDir", DEFAULT_BIN_DIR),
        log_file=doc.get("logFile"),
        log_level=doc.get("logLevel", "panic"),
        log_to_stderr=doc.get("logToStderr", False),
        readiness_file=doc.get("readinessindicatorfile"),
        readiness_timeout=float(doc.get("readinessTimeout", DEFAULT_READINESS_TIMEOUT)),
        delegate_timeout=float(doc.get("delegateTimeout", DEFAULT_DELEGATE_TIMEOUT)),
        binary_types=frozenset(doc.get("binaryDelegates", ())),
    )
