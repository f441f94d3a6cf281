"""Property-based fuzzing (hypothesis) of everything that parses untrusted input: the multus conf loader,
CNI_ARGS, the networks annotations, kube-ipam's annotations and config, and result conversion between
every CNI version. Each parser either accepts or raises a CNIError (ConfigError is one): never anything
else, never a traceback the runtime would see as code 999."""

from __future__ import annotations

import copy
import ipaddress
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delegates.kube_ipam import annotations as kube_annotations
from delegates.kube_ipam import config as kube_config
from multipy.cni import env as cni_env
from multipy.cni.errors import INTERNAL, CNIError
from multipy.cni.result import DNS, Interface, IPConfig, Result, Route
from multipy.cni.version import SUPPORTED_VERSIONS
from multipy.config import multus
from multipy.k8s import selection
from multipy.testing.topology import SEED_KUBE_IPAM

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
nasty_text = st.one_of(text, st.sampled_from(["", ".", "..", "a\x00b", "\ud800", "x" * 300, "net\n", "a:b", "a/b",
                                              "-", "eth0", "1.2.3.4", "10.188.0.218/24", "::1", "null"]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64), st.floats(allow_nan=True), nasty_text)
json_values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                           st.dictionaries(nasty_text, kids, max_size=4)), max_leaves=12)

SEED_CONF = {
    "cniVersion": "0.3.1", "name": "multus-demo", "type": "multus-cni",
    "delegates": [
        {"name": "k8snet1", "type": "bridge", "masterplugin": True, "bridge": "cni0",
         "ipam": {"type": "host-local", "subnet": "10.244.1.0/24"}},
        {"name": "k8snet2", "type": "macvlan", "master": "eth1", "ipam": dict(SEED_KUBE_IPAM)},
    ],
}  # fmt: skip


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated(draw, seed):
    """The seed document with a few values replaced, keys added or removed."""
    doc = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete" and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif isinstance(parent, dict):
            parent[draw(nasty_text)] = draw(json_values)
    return doc


def _only_cni_errors(fn, *args):
    try:
        return fn(*args)
    except CNIError as err:
        assert isinstance(err.code, int) and err.code != INTERNAL, f"code {err.code}: {err.msg}"
        assert isinstance(err.msg, str) and err.msg
        return None


@FAST
@given(mutated(SEED_CONF))
def test_conf_loader_raises_only_config_errors(doc):
    _only_cni_errors(multus.load, doc)
    found = _only_cni_errors(multus.problems, doc)
    assert found is None or isinstance(found, list)


@FAST
@given(json_values)
def test_conf_loader_on_any_json(doc):
    doc = doc if isinstance(doc, dict) else {"delegates": doc}
    _only_cni_errors(multus.load, doc)


@FAST
@given(st.text(max_size=200), st.sampled_from(["IP", "MAC", "K8S_POD_NAME", "IgnoreUnknown", "x"]))
def test_cni_args_parse_or_refuse(raw, key):
    pairs = _only_cni_errors(cni_env.parse_args, raw)
    if pairs is not None:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items())
        again = _only_cni_errors(cni_env.parse_args, cni_env.format_args(pairs))
        assert again == pairs
    value = _only_cni_errors(cni_env.cni_arg, raw, key)
    assert value is None or isinstance(value, str)


@FAST
@given(st.dictionaries(st.sampled_from(["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS",
                                        "CNI_PATH"]), nasty_text))  # fmt: skip
def test_cni_environment_load(environ):
    environ.setdefault("CNI_COMMAND", "ADD")
    _only_cni_errors(cni_env.load, environ)


network_item = st.one_of(
    nasty_text,
    st.builds(lambda ns, n, i: f"{ns}/{n}@{i}", nasty_text, nasty_text, nasty_text),
    st.builds(lambda n: n, st.from_regex(r"[a-z0-9-]{1,10}(@[a-z0-9]{1,8})?", fullmatch=True)),
)


@FAST
@given(st.one_of(st.lists(network_item, max_size=4).map(", ".join), json_values.map(json.dumps), st.text(max_size=80)),
       st.sampled_from(["default", "kube-system", ""]))
def test_networks_annotation(value, namespace):
    found = _only_cni_errors(selection.parse_networks, value, namespace or "default")
    if found:
        assert all(isinstance(s, selection.Selection) for s in found)
    _only_cni_errors(selection.parse_default_network, value, namespace or "default")


KUBE_ANNOTATION_KEYS = ["kube-ipam.ip", "kube-ipam.netmask", "kube-ipam.gateway", "other"]


@FAST
@given(st.one_of(st.none(), st.dictionaries(st.sampled_from(KUBE_ANNOTATION_KEYS), st.one_of(
    nasty_text, st.ip_addresses(v=4).map(str), st.lists(st.ip_addresses(v=4).map(str), max_size=3).map(",".join),
    st.integers(-1, 40).map(str), json_values), max_size=4)))  # fmt: skip
def test_kube_ipam_annotations(given_annotations):
    _only_cni_errors(kube_annotations.parse, given_annotations)


@FAST
@given(mutated({"cniVersion": "1.0.0", "name": "k8snet2", "type": "macvlan",
                "ipam": dict(SEED_KUBE_IPAM, etcdConfig={"etcdURL": "https://127.0.0.1:2379"})}))
def test_kube_ipam_config(conf):
    _only_cni_errors(kube_config.load, conf)
    _only_cni_errors(kube_config.location, conf)


# -- results: convert between every pair of versions; every output is valid for its version


@st.composite
def results(draw):
    n_if = draw(st.integers(0, 3))
    interfaces = [Interface(name=draw(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)),
                            mac=draw(st.sampled_from(["", "aa:bb:cc:dd:ee:0f"])),
                            sandbox=draw(st.sampled_from(["", "/run/netns/p"]))) for _ in range(n_if)]  # fmt: skip
    ips = []
    for _ in range(draw(st.integers(0, 3))):
        v6 = draw(st.booleans())
        addr = draw(st.ip_addresses(v=6 if v6 else 4))
        prefix = draw(st.integers(8, 128 if v6 else 32))
        iface = ipaddress.ip_interface(f"{addr}/{prefix}")
        gateway = draw(st.one_of(st.none(), st.ip_addresses(v=6 if v6 else 4)))
        index = draw(st.one_of(st.none(), st.integers(0, n_if - 1))) if n_if else None
        ips.append(IPConfig(iface, gateway, index))
    routes = [Route(ipaddress.ip_network(draw(st.sampled_from(["0.0.0.0/0", "10.0.0.0/8", "::/0"]))),
                    draw(st.one_of(st.none(), st.just(ipaddress.ip_address("10.0.0.1")))))
              for _ in range(draw(st.integers(0, 2)))]  # fmt: skip
    dns = DNS(draw(st.lists(st.sampled_from(["10.0.0.10", "fd00::a"]), max_size=2)), draw(st.sampled_from(["", "cluster.local"])))
    return Result(draw(st.sampled_from(SUPPORTED_VERSIONS)), interfaces, ips, routes, dns)


def _valid(doc: dict, version: str) -> Result:
    """The wire document parses back as its version, with nothing dropped on the way."""
    assert doc["cniVersion"] == version
    json.dumps(doc)
    return Result.from_json(doc)


@settings(max_examples=120, deadline=None)
@given(results(), st.sampled_from(SUPPORTED_VERSIONS), st.sampled_from(SUPPORTED_VERSIONS))
def test_result_conversion_between_all_versions(result, via, to):
    try:
        wire = result.to_json(result.cni_version)
    except CNIError:
        return  # a result with no form in its own version (e.g. 0.2.0 without an address)
    start = _valid(wire, result.cni_version)
    for target in (via, to):
        try:
            converted = start.convert(target)
            doc = converted.to_json(target)
        except CNIError as err:  # no form in that version (L2-only as 0.2.0): a CNI error, never a crash
            assert err.code != INTERNAL
            continue
        back = _valid(doc, target)
        # Round trip: what the target version can say survives a second conversion unchanged.
        again = back.convert(target).to_json(target)
        assert again == doc
