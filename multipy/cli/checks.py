"""What `multipy status` checks, one `Check` per fact, without click: is the conf valid, can every
delegate `type` be run, are etcd and the Kubernetes API there, is flannel's subnet.env complete.

The networks checked are the conf's delegates, and for a clusterNetwork/defaultNetworks name
that is not in confDir, the NetworkAttachmentDefinition of that name in multusNamespace.

Each check answers within a couple of seconds (TIMEOUT) and never raises: a failure is a
Check with ok=False whose detail says why, naming the file, key or endpoint at fault and
never a credential.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from delegates import flannel_env
from delegates.kube_ipam import config as kube_config
from delegates.kube_ipam.pods import ANNOTATIONS_CAPABILITY
from multipy.cni.errors import CNIError
from multipy.config import multus
from multipy.config.network import Network
from multipy.plugins.binary import find_binary
from multipy.plugins.contract import DELEGATE_GROUP, IPAM_GROUP
from multipy.plugins.registry import Registry

TIMEOUT = 2.0  # seconds per etcd or API check
# A pod that does not exist: GETting it proves the API answers and lets these credentials read pods.
PROBE_NAMESPACE, PROBE_POD = "kube-system", "multipy-status-probe"
# connect()'s argument names as the etcdConfig keys an operator wrote.
_ETCD_KEYS = {"endpoints": "etcdURL", "cert_file": "etcdCertFile", "key_file": "etcdKeyFile",
              "ca_file": "etcdTrustedCAFileFile", "timeout": "etcdURL"}  # fmt: skip


@dataclass(frozen=True)
class Check:
    kind: str  # conf, type, etcd, api, subnet.env, readiness
    subject: str  # what was checked: a file, "k8snet2: macvlan", an endpoint list
    ok: bool
    detail: str
    extra: dict = field(default_factory=dict, compare=False)  # more for -o json (a conf's problems)

    def as_dict(self) -> dict:
        return {"check": self.kind, "subject": self.subject, "ok": self.ok, "detail": self.detail, **self.extra}


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


def nad_checks(conf: multus.MultusConf) -> tuple[list[Check], list[Network]]:
    """The delegates known only by name (not in confDir): their NetworkAttachmentDefinitions, read
    through the conf's kubeconfig, and the networks they define."""
    pending = [d for d in conf.delegates if d.network is None]
    if not pending:
        return [], []
    from multipy.clients import kube as kube_client
    from multipy.k8s.nads import to_network

    subjects = [f"{conf.multus_namespace}/{d.ref}" for d in pending]
    try:
        client = kube_client.from_kubeconfig(conf.kubeconfig or None, timeout=TIMEOUT)
    except kube_client.KubeConfigError as error:
        return [Check("network", s, False, f"not in confDir {conf.conf_dir}, and {error}") for s in subjects], []
    checks, networks = [], []
    try:
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
    finally:
        client.close()
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


# -- kube-ipam's etcd and the Kubernetes API


def _kube_ipam(networks: list[Network]):
    for net, plugin in _plugins(networks):
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "kube-ipam":
            yield net, plugin, ipam


def etcd_checks(networks: list[Network]) -> list[Check]:
    from multipy.clients import etcd as etcd_client

    checks: list[Check] = []
    seen: set[str] = set()
    for net, plugin, _ in _kube_ipam(networks):
        try:
            where = kube_config.location(plugin).etcd
        except CNIError as error:
            checks.append(Check("etcd", f"{net.name}: kube-ipam", False, error.msg))
            continue
        key = json.dumps(where.as_dict(), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        subject = f"{net.name}: {where.url}"
        try:
            client = etcd_client.connect(
                where.url,
                cert_file=where.cert_file or None,
                key_file=where.key_file or None,
                ca_file=where.ca_file or None,
                timeout=TIMEOUT,
                connect_timeout=TIMEOUT,
            )
        except etcd_client.EtcdConfigError as error:
            name = _ETCD_KEYS.get(error.field, error.field)
            checks.append(Check("etcd", subject, False, f"ipam.etcdConfig.{name}: {error.reason}"))
            continue
        try:
            status = client.status()
        except etcd_client.EtcdUnavailable as error:
            checks.append(Check("etcd", subject, False, str(error)))
        else:
            checks.append(
                Check(
                    "etcd",
                    subject,
                    True,
                    f"etcd {status.version} at {status.endpoint} serves (revision {status.revision})",
                )
            )
        finally:
            client.close()
    return checks


def kubeconfigs(conf: multus.MultusConf, networks: list[Network], environ=None) -> list[tuple[str, str]]:
    """(kubeconfig path, who names it): the conf's `kubeconfig` and each kube-ipam `kubeConfig`.

    Without a `kubeconfig`, multipy uses the in-cluster service account when KUBERNETES_SERVICE_HOST
    is set (path ""). kube-ipam falls back to its default path, but only reads the API when the
    runtime does not hand over the pod's annotations: a network declaring that capability needs none.
    """
    environ = os.environ if environ is None else environ
    found: dict[str, str] = {}
    if conf.kubeconfig:
        found[conf.kubeconfig] = "kubeconfig"
    elif environ.get("KUBERNETES_SERVICE_HOST"):
        found[""] = "in-cluster service account"
    for net, plugin, ipam in _kube_ipam(networks):
        path = ipam.get("kubeConfig")
        capabilities = plugin.get("capabilities") if isinstance(plugin.get("capabilities"), dict) else {}
        if not (isinstance(path, str) and path.strip()):
            if capabilities.get(ANNOTATIONS_CAPABILITY) is True:
                continue
            path = kube_config.DEFAULT_KUBECONFIG
        found.setdefault(path.strip(), f"{net.name}: ipam.kubeConfig")
    return list(found.items())


def api_check(path: str, named_by: str) -> Check:
    """`path` "": the in-cluster service account."""
    from multipy.clients import kube as kube_client

    subject = f"{named_by} {path}".rstrip()
    try:
        client = kube_client.from_kubeconfig(path or None, timeout=TIMEOUT)
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
    finally:
        client.close()
    return Check("api", subject, True, f"{client.server} answers and accepts these credentials")


# -- node files


def flannel_checks(networks: list[Network]) -> list[Check]:
    checks = []
    for net, plugin in _plugins(networks):
        if plugin["type"] != "flannel":
            continue
        path = plugin.get("subnetFile") if isinstance(plugin.get("subnetFile"), str) else ""
        path = path or flannel_env.DEFAULT_PATH
        try:
            env = flannel_env.load(path)
        except CNIError as error:
            checks.append(Check("subnet.env", f"{net.name}: {path}", False, error.msg))
            continue
        subnets = ", ".join(str(s) for s in (env.subnet, env.ipv6_subnet) if s is not None)
        networks = ", ".join(str(n) for n in (*env.networks, *env.ipv6_networks))
        checks.append(
            Check(
                "subnet.env",
                f"{net.name}: {path}",
                True,
                f"subnet {subnets} of {networks}, MTU {env.mtu}, IPMASQ {str(env.ipmasq).lower()}",
            )
        )
    return checks


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
    checks, from_api = nad_checks(conf)
    networks = [d.network for d in conf.delegates if d.network is not None] + from_api
    checks = [first, *checks, *type_checks(networks, resolver_factory(conf))]
    checks += etcd_checks(networks)
    checks += [api_check(p, who) for p, who in kubeconfigs(conf, networks)]
    checks += flannel_checks(networks)
    checks += readiness_check(conf)
    return checks
