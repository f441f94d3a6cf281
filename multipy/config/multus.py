"""The meta plugin's own conf (10-multus.conf): loading, checking and its model."""

from __future__ import annotations

from dataclasses import dataclass

from multipy.cni.env import validate_ifname
from multipy.cni.errors import CNIError
from multipy.log import Rotation

from . import confdir, network, plugin_schemas, schema
from .problems import ConfigError, Findings, Problem, child

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
# Keys of Go Multus v4's conf that have no meaning here: accepted (so a Multus conf loads), checked
# for type by the schema, and named by warnings(). daemonSocketDir is thick mode's (multipy/shim.py).
IGNORED_MULTUS_KEYS = ("ipam", "dns")
IGNORED = "accepted for Go Multus compatibility and ignored"


@dataclass(frozen=True)
class Delegate:
    network: network.Network | None  # None: `ref` is not in confDir and may be a NAD (resolved per pod)
    master: bool
    interface: str | None = None  # the ifname the delegate asks for, if any
    ref: str | None = None  # the clusterNetwork/defaultNetworks entry it came from
    path: str = "$"  # JSON path of the conf's entry naming it

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
    log_rotation: Rotation | None = None  # logOptions; None: logFile is only appended to
    # retryDeleteOnError as written; None when left out (the orchestrator's DEL gives it meaning).
    retry_delete_on_error: bool | None = None
    # Thick mode: read by the shim (multipy/shim.py, which imports nothing of multipy) from the raw conf,
    # and kept here for the daemon and `multipy validate`. None: /run/multipy.
    daemon_socket_dir: str | None = None
    thin_fallback: bool = True  # False: only DEL runs in thin mode when the daemon cannot be reached

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
    if not (has_delegates or has_cluster):  # with both, clusterNetwork wins as in Multus: see warnings()
        found.append(Problem("$", "one of 'delegates' or 'clusterNetwork' must be set"))
    if "defaultNetworks" in doc and not has_cluster:
        found.append(Problem("$.defaultNetworks", "needs 'clusterNetwork'"))
    delegates = doc.get("delegates")
    delegates = delegates if isinstance(delegates, list) else []  # a non-list is the schema's finding
    masters = [i for i, d in enumerate(delegates) if isinstance(d, dict) and d.get("masterplugin") is True]
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
    if "clusterNetwork" not in doc:
        delegates = []
        flagged = any(isinstance(d, dict) and d.get("masterplugin") is True for d in doc["delegates"])
        for index, entry in enumerate(doc["delegates"]):
            path = child("$.delegates", index)
            master = entry.get("masterplugin") is True if flagged else index == 0
            delegates.append(Delegate(network.from_dict(entry, path, version), master, entry.get("interface"), path=path))
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
        delegates.append(Delegate(found, master=(i == 0), ref=ref, path=path))
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


def _plugin_findings(delegates: tuple[Delegate, ...], doc: dict, stamp_dir: str | None,
                     schema_for: plugin_schemas.SchemaLookup) -> Findings:  # fmt: skip
    """Every delegate's plugin confs against the schemas their native plugins declare."""
    binary_types = frozenset(doc.get("binaryDelegates", ()))
    found = Findings()
    for delegate in delegates:
        if delegate.network is None:
            continue  # a NAD, known per pod
        if delegate.ref is None:
            found.extend(plugin_schemas.check(delegate.network, delegate.path, schema_for, binary_types, stamp_dir))
            continue
        # A file in confDir: its paths are the file's own, shown after the reference (as confdir.find does).
        inner = plugin_schemas.check(delegate.network, "$", schema_for, binary_types, stamp_dir)
        found.problems += [Problem(delegate.path, f"{delegate.ref!r}: {p}") for p in inner.problems]
        found.unchecked += [Problem(delegate.path, f"{delegate.ref!r}: {p}") for p in inner.unchecked]
    return found


def _check(doc, stamp_dir: str | None,
           schema_for: plugin_schemas.SchemaLookup | None) -> tuple[Findings, tuple[Delegate, ...]]:
    if not isinstance(doc, dict):
        return Findings([Problem("$", "the configuration must be a JSON object")]), ()
    found = schema.validate_cached([schema.multus_target(operator_part(doc))], stamp_dir)
    found += _runtime_problems(doc) + _shape_problems(doc)
    if found:
        return Findings(found), ()
    try:
        delegates = _resolve(doc)
    except ConfigError as err:
        return Findings(err.problems), ()
    findings = Findings(_interface_problems(delegates))
    if schema_for is not None:
        findings.extend(_plugin_findings(delegates, doc, stamp_dir, schema_for))
    return findings, delegates


def warnings(doc) -> list[Problem]:
    """What a valid conf says that multipy ignores, for `multipy validate` and the log. Plain dict
    work: it runs on every request, where the schema (jsonschema) is skipped for a known conf."""
    if not isinstance(doc, dict):
        return []
    found = [Problem(child("$", key), IGNORED) for key in IGNORED_MULTUS_KEYS if key in doc]
    if "delegates" in doc and "clusterNetwork" in doc:
        found.append(Problem("$.delegates", "ignored: 'clusterNetwork' is set, and wins as in Go Multus"))
    return found


def log_rotation(doc) -> Rotation | None:
    """logOptions as a Rotation; also read from a conf not checked yet, to log why it is refused."""
    options = doc.get("logOptions") if isinstance(doc, dict) else None
    return Rotation.from_log_options(options) if isinstance(options, dict) else None


def findings(doc, stamp_dir: str | None = None,
             schema_for: plugin_schemas.SchemaLookup | None = None) -> Findings:
    """Every problem in a conf, and the plugin confs that could not be checked, for `multipy validate`.

    With `schema_for`, each delegate's plugin confs (and their `ipam`) are checked against the
    schemas their native plugins declare; without it, only the multus conf itself is."""
    return _check(doc, stamp_dir, schema_for)[0]


def problems(doc, stamp_dir: str | None = None, schema_for: plugin_schemas.SchemaLookup | None = None) -> list[Problem]:
    """Every problem in a conf, as load() finds them."""
    return findings(doc, stamp_dir, schema_for).problems


def load(doc: dict, stamp_dir: str | None = None, schema_for: plugin_schemas.SchemaLookup | None = None) -> MultusConf:
    found, delegates = _check(doc, stamp_dir, schema_for)
    if found.problems:
        raise ConfigError(found.problems)
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
        log_rotation=log_rotation(doc),
        retry_delete_on_error=doc.get("retryDeleteOnError"),
        daemon_socket_dir=doc.get("daemonSocketDir"),
        thin_fallback=doc.get("thinFallback", True),
    )


def _namespaces(value) -> tuple[str, ...]:
    # Multus writes globalNamespaces as one comma-separated string; a list is accepted too.
    items = value.split(",") if isinstance(value, str) else value
    return tuple(n.strip() for n in items if n.strip())
