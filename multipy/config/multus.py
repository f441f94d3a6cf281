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
DEFAULT_KUBE_TIMEOUT = 10.0  # seconds per API request
DEFAULT_KUBE_TOTAL_TIMEOUT = 30.0  # seconds for all API requests of one ADD
DEFAULT_MULTUS_NAMESPACE = "kube-system"
DEFAULT_SYSTEM_NAMESPACES = ("kube-system",)
DEFAULT_GLOBAL_NAMESPACES = ("default",)

# Keys a runtime adds per request; they are not the operator's and vary per pod.
RUNTIME_KEYS = ("runtimeConfig", "prevResult", "args")


@dataclass(frozen=True)
class Delegate:
    network: network.Network | None  # None: `ref` is not in confDir and may be a NAD (resolved per pod)
    master: bool
    interface: str | None = None  # the ifname the delegate asks for, if any
    ref: str | None = None  # the clusterNetwork/defaultNetworks entry it came from

    @property
    def name(self) -> str:
        return self.network.name if self.network is not None else str(self.ref)


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
    multus_namespace: str = DEFAULT_MULTUS_NAMESPACE
    system_namespaces: tuple[str, ...] = DEFAULT_SYSTEM_NAMESPACES
    namespace_isolation: bool = False
    global_namespaces: tuple[str, ...] = DEFAULT_GLOBAL_NAMESPACES
    kube_timeout: float = DEFAULT_KUBE_TIMEOUT
    kube_total_timeout: float = DEFAULT_KUBE_TOTAL_TIMEOUT

    @property
    def resolved(self) -> tuple[Delegate, ...]:
        """The delegates known without the API (a NAD-only clusterNetwork is not among them)."""
        return tuple(d for d in self.delegates if d.network is not None)

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
    # With an API, a name missing from confDir may be a NetworkAttachmentDefinition: that is
    # settled per pod. A file that exists but is broken is an error either way.
    may_be_nad = bool(doc.get("kubeconfig"))
    delegates = []
    for i, (path, ref) in enumerate(refs):
        try:
            found = confdir.find(ref, conf_dir, version, path)
        except ConfigError:
            if not (may_be_nad and confdir.absent(ref, conf_dir)):
                raise
            found = None
        delegates.append(Delegate(found, master=(i == 0), ref=ref))
    return tuple(delegates)


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
        multus_namespace=doc.get("multusNamespace", DEFAULT_MULTUS_NAMESPACE),
        system_namespaces=tuple(doc.get("systemNamespaces", DEFAULT_SYSTEM_NAMESPACES)),
        namespace_isolation=doc.get("namespaceIsolation", False),
        global_namespaces=_namespaces(doc.get("globalNamespaces", DEFAULT_GLOBAL_NAMESPACES)),
        kube_timeout=float(doc.get("kubeTimeout", DEFAULT_KUBE_TIMEOUT)),
        kube_total_timeout=float(doc.get("kubeTotalTimeout", DEFAULT_KUBE_TOTAL_TIMEOUT)),
    )


def _namespaces(value) -> tuple[str, ...]:
    # Multus writes globalNamespaces as one comma-separated string; a list is accepted too.
    items = value.split(",") if isinstance(value, str) else value
    return tuple(n.strip() for n in items if n.strip())
