"""What `multipy status` checks, one `Check` per fact, without click: is the conf valid, can every
delegate `type` be run, does the conf's Kubernetes API answer, is the readiness file there; and
what each plugin declares it needs (its factory's `status_checks`, see plugins/operator.py), such
as kube-ipam's etcd and API or flannel's subnet.env.

The networks checked are the conf's delegates, and for a clusterNetwork/defaultNetworks name
that is not in confDir, the NetworkAttachmentDefinition of that name in multusNamespace.

Each check answers within a couple of seconds (TIMEOUT) and never raises: a failure is a
Check with ok=False whose detail says why, naming the file, key or endpoint at fault and
never a credential. The clients of one run come from one pool, closed when the run ends.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable

from multipy.clients.pool import ClientPool
from multipy.cni.errors import CNIError
from multipy.config import multus
from multipy.config.network import Network
from multipy.plugins.binary import find_binary
from multipy.plugins.contract import DELEGATE_GROUP, IPAM_GROUP, KubeFactory
from multipy.plugins.operator import Check
from multipy.plugins.registry import Registry

TIMEOUT = 2.0  # seconds per etcd or API check
# A pod that does not exist: GETting it proves the API answers and lets these credentials read pods.
PROBE_NAMESPACE, PROBE_POD = "kube-system", "multipy-status-probe"


# -- the conf


def conf_check(path: str, raw: bytes) -> tuple[Check, multus.MultusConf | None]:
    """The conf's validity (what `multipy validate` checks) and, when valid, the loaded conf."""
    try:
        doc = json.loads(raw)
    except ValueError as error:
        return Check("conf", path, False, f"$: not valid JSON: {error}"), None
    problems = multus.problems(doc)
    if problems:
        more = f" (and {len(problems) - 1} more; see multipy validate {path})" if len(problems) > 1 else ""
        rows = [{"path": p.path, "message": p.message} for p in problems]
        return Check("conf", path, False, f"{problems[0]}{more}", {"problems": rows}), None
    conf = multus.load(doc)
    return Check("conf", path, True, f"valid, {len(conf.delegates)} delegate(s)"), conf


def _plugins(networks: list[Network]):
    """(network, plugin conf as a runtime hands it over) for every plugin of every network."""
    for net in networks:
        for plugin in net.plugins:
            yield net, dict(plugin, name=net.name, cniVersion=net.cni_version)


def nad_checks(conf: multus.MultusConf, probe: Probe) -> tuple[list[Check], list[Network]]:
    """The delegates known only by name (not in confDir): their NetworkAttachmentDefinitions, read
    through the conf's kubeconfig, and the networks they define."""
    pending = [d for d in conf.delegates if d.network is None]
    if not pending:
        return [], []
    from multipy.clients import kube as kube_client
    from multipy.k8s.nads import to_network

    subjects = [f"{conf.multus_namespace}/{d.ref}" for d in pending]
    try:
        client = probe.kube(conf.kubeconfig or None, timeout=probe.timeout)
    except kube_client.KubeConfigError as error:
        return [Check("network", s, False, f"not in confDir {conf.conf_dir}, and {error}") for s in subjects], []
    checks, networks = [], []
    for delegate, subject in zip(pending, subjects, strict=True):
        try:
            nad = client.get_network_attachment_definition(conf.multus_namespace, delegate.ref)
            net = to_network(nad, subject, conf.conf_dir, conf.cni_version)
        except kube_client.KubeNotFound:
            checks.append(Check("network", subject, False, f"neither in confDir {conf.conf_dir} nor a "
                                                           "NetworkAttachmentDefinition"))  # fmt: skip
        except kube_client.KubeError as error:
            checks.append(Check("network", subject, False, f"not in confDir {conf.conf_dir}: {error}"))
        except CNIError as error:
            checks.append(Check("network", subject, False, error.msg))
        else:
            checks.append(Check("network", subject, True, f"NetworkAttachmentDefinition of network {net.name}"))
            networks.append(net)
    return checks, networks


# -- delegate types


class Resolver:
    """Finds what would run for a `type`, as the chain does: a native plugin unless the type is in
    binaryDelegates, else an executable in binDir then CNI_PATH."""

    def __init__(self, conf: multus.MultusConf, registry: Registry | None = None, environ=None) -> None:
        environ = os.environ if environ is None else environ
        cni_path = tuple(p for p in environ.get("CNI_PATH", "").split(os.pathsep) if p)
        self.search_path = (conf.bin_dir, *cni_path)
        self.binary_types = conf.binary_types
        self.registry = registry or Registry()

    def resolve(self, group: str, plugin_type: str, binary_only: bool = False) -> tuple[bool, str, bool]:
        """(found, how or why not, runs natively)."""
        if not binary_only and plugin_type not in self.binary_types:
            try:
                factory = self.registry.find(group, plugin_type)
            except CNIError as error:
                return False, error.msg, True
            if factory is not None:
                name = getattr(factory, "__qualname__", type(factory).__name__)
                return True, f"native plugin {getattr(factory, '__module__', '?')}:{name}", True
        why = " (listed in binaryDelegates)" if plugin_type in self.binary_types else ""
        try:
            return True, f"binary {find_binary(plugin_type, self.search_path)}{why}", False
        except CNIError as error:
            return False, f"{error.msg}{why}", False


def type_checks(networks: list[Network], resolver: Resolver) -> list[Check]:
    checks: list[Check] = []
    seen: set[tuple] = set()

    def check(net, role: str, group: str, plugin_type: str, binary_only: bool = False) -> bool:
        key = (net.name, role, group, plugin_type, binary_only)
        ok, detail, native = resolver.resolve(group, plugin_type, binary_only)
        if key not in seen:
            seen.add(key)
            checks.append(Check("type", f"{net.name}: {role} {plugin_type}", ok, detail))
        return native

    for net, plugin in _plugins(networks):
        plugin_type = plugin["type"]
        native = check(net, "type", DELEGATE_GROUP, plugin_type)
        ipam = plugin.get("ipam") if isinstance(plugin.get("ipam"), dict) else {}
        if plugin_type == "flannel":
            # flannel hands its own delegate (bridge by default) the IPAM (host-local by default);
            # the Go flannel execs both as binaries, multipy's runs them through the chain.
            inner = plugin.get("delegate") if isinstance(plugin.get("delegate"), dict) else {}
            check(net, "flannel delegate", DELEGATE_GROUP, str(inner.get("type") or "bridge"), not native)
            check(net, "flannel ipam", IPAM_GROUP, str(ipam.get("type") or "host-local"), not native)
        elif isinstance(ipam.get("type"), str) and ipam["type"]:
            # A binary main plugin execs its IPAM as a binary too.
            check(net, "ipam", IPAM_GROUP, ipam["type"], not native)
    return checks


# -- the Kubernetes API


def api_check(kube: KubeFactory, path: str, named_by: str, timeout: float = TIMEOUT) -> Check:
    """`path` "": the in-cluster service account."""
    from multipy.clients import kube as kube_client

    subject = f"{named_by} {path}".rstrip()
    try:
        client = kube(path or None, timeout=timeout)
    except kube_client.KubeConfigError as error:
        return Check("api", subject, False, str(error))
    try:
        client.get_pod(PROBE_NAMESPACE, PROBE_POD)
    except kube_client.KubeNotFound:
        pass  # the answer expected: reachable, and these credentials may read pods
    except kube_client.KubeUnauthorized as error:
        refused = "not allowed to get pods" if error.status == 403 else "credentials refused"
        whose = f"kubeconfig {path}" if path else "the in-cluster service account"
        return Check("api", subject, False, f"{client.server}: {refused} (HTTP {error.status}) for {whose}")
    except kube_client.KubeError as error:
        return Check("api", subject, False, str(error))
    return Check("api", subject, True, f"{client.server} answers and accepts these credentials")


def conf_kubeconfig(conf: multus.MultusConf, environ=None) -> tuple[str, str] | None:
    """(kubeconfig path, who names it) of the conf's own API, as the plugin finds it: its `kubeconfig`,
    else the in-cluster service account (path "") when KUBERNETES_SERVICE_HOST is set; else None."""
    environ = os.environ if environ is None else environ
    if conf.kubeconfig:
        return conf.kubeconfig, "kubeconfig"
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return "", "in-cluster service account"
    return None


class Probe:
    """The StatusProbe of one run: its clients (closed by close()) and what was already checked."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self._clients = ClientPool()
        self.etcd = self._clients.etcd
        self.kube = self._clients.kube
        self._seen: set[Hashable] = set()

    def first(self, key: Hashable) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def api(self, kubeconfig: str, named_by: str) -> Check | None:
        if not self.first(("api", kubeconfig)):
            return None
        return api_check(self.kube, kubeconfig, named_by, self.timeout)

    def close(self) -> None:
        self._clients.close()


# -- what plugins declare


def plugin_checks(networks: list[Network], registry: Registry, probe: Probe) -> list[Check]:
    """Every plugin's declared checks (its type's, then its IPAM type's), in the conf's order.

    They run whether the plugin runs natively or as a binary: the conf keys mean the same."""
    checks: list[Check] = []
    for net, plugin in _plugins(networks):
        ipam = plugin.get("ipam") if isinstance(plugin.get("ipam"), dict) else {}
        for group, plugin_type in ((DELEGATE_GROUP, plugin["type"]), (IPAM_GROUP, ipam.get("type"))):
            if not isinstance(plugin_type, str) or not plugin_type:
                continue
            try:
                hook = getattr(registry.find(group, plugin_type), "status_checks", None)
            except CNIError:
                continue  # the type check already says that it cannot load
            if hook is None:
                continue
            try:
                checks += hook(plugin, probe)
            except Exception as error:  # a plugin's bug must not hide every other line
                checks.append(Check("plugin", f"{net.name}: {plugin_type}", False,
                                    f"status_checks failed: {type(error).__name__}: {error}"))  # fmt: skip
    return checks


# -- node files


def readiness_check(conf: multus.MultusConf) -> list[Check]:
    path = conf.readiness_file
    if not path:
        return []
    if os.path.exists(path):
        return [Check("readiness", path, True, "present")]
    return [Check("readiness", path, False, "missing: ADD waits for it and STATUS fails (code 50)")]


def run_all(path: str, raw: bytes, resolver_factory=Resolver) -> list[Check]:
    """Every check of the conf at `path` (its bytes `raw`); only the conf check when it is invalid."""
    first, conf = conf_check(path, raw)
    if conf is None:
        return [first]
    probe = Probe()
    try:
        checks, from_api = nad_checks(conf, probe)
        networks = [d.network for d in conf.delegates if d.network is not None] + from_api
        resolver = resolver_factory(conf)
        checks = [first, *checks, *type_checks(networks, resolver)]
        own_api = conf_kubeconfig(conf)
        if own_api is not None and (api := probe.api(*own_api)) is not None:
            checks.append(api)
        checks += plugin_checks(networks, resolver.registry, probe)
        checks += readiness_check(conf)
    finally:
        probe.close()
    return checks
