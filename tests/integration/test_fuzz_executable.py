"""Black-box mutational fuzzing of the `multus-cni` executable: mutated seed confs (conf/10-multus.conf and
the test suite's native confs), environment variables and stdin bytes. Every case must end in success or
in one CNI error document with a specific code (never 999 from a traceback, never no JSON), and nothing
may be left behind (state in a temp cniDir and temp dataDirs, network namespaces absent, every request run
inside a throwaway namespace so even a host-side step stays off the host).

Seeded: the seed is printed; MULTIPY_FUZZ_SEED replays it, MULTIPY_FUZZ_CASES sets the number of cases
(500 in CI). Most cases run in-process through multipy.cni.skel.run; every 20th through the real executable.
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import subprocess

import pytest

from multipy.cni import skel
from multipy.entry import build
from multipy.net.netns import run_in
from multipy.testing.runtime import executable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED = int(os.environ.get("MULTIPY_FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))
CASES = int(os.environ.get("MULTIPY_FUZZ_CASES") or 500)
REAL_EVERY = 20
COMMANDS = ["ADD", "ADD", "ADD", "DEL", "DEL", "CHECK", "GC", "STATUS", "VERSION", "", "add", "BOGUS", "DEL\x00"]
NETNS = ["", "/run/netns/multipy-fuzz-absent", "/nonexistent-fuzz/ns", "relative/ns", "/run/netns/\u00e9\u00e9", "\t"]
WEIRD = ["", ".", "..", "-", "a" * 300, "a\nb", "\u00e9", "net1", "eth0", "x;y", "=", "IgnoreUnknown=1", "a:b", "a/b",
         "K8S_POD_NAME=p;K8S_POD_NAMESPACE=default", "IP=10.188.0.9", "MAC=zz", "IgnoreUnknown=true;X=1;X=2", " ",
         "1" * 64, "\u202e", "lo"]  # fmt: skip
VALUES = [None, True, False, 0, -1, 1, 2**63, 1.5, "", "x", "\u00e9", "a" * 2000, [], {}, [1, "a"], {"a": {"b": []}},
          "0.3.1", "1.1.0", "9.9.9", "bridge", "macvlan", "host-local", "kube-ipam", "flannel", "loopback",
          "10.188.0.0/16", "10.188.1.0", "300.1.1.1", "/dev/null", "/nonexistent", "../../etc", "eth0", "net\n"]  # fmt: skip


def _seeds(tmp) -> list[dict]:
    with open(os.path.join(ROOT, "conf", "10-multus.conf")) as f:
        seed = json.load(f)
    native = {
        "cniVersion": "1.1.0", "name": "multus-fuzz", "type": "multus-cni",
        "delegates": [
            {"name": "k8snet1", "type": "bridge", "masterplugin": True, "bridge": "cni0",
             "ipam": {"type": "host-local", "subnet": "10.244.1.0/24"}},
            {"name": "k8snet2", "type": "macvlan", "master": "uplink0",
             "ipam": {"type": "host-local", "subnet": "10.188.0.0/16", "rangeStart": "10.188.1.0"}},
        ],
    }  # fmt: skip
    loop = {"cniVersion": "0.4.0", "name": "lo-only", "type": "multus-cni", "delegates": [{"name": "lo", "type": "loopback"}]}
    return [seed, native, loop]


def _confine(doc, tmp) -> None:
    """Every path the conf names points into tmp; every service address is refused at once."""
    if isinstance(doc, dict):
        for key, value in list(doc.items()):
            if key in ("dataDir",):
                doc[key] = os.path.join(tmp, "data")
            elif key in ("kubeConfig", "kubeconfig"):
                doc[key] = "/nonexistent/kubeconfig"
            elif key == "etcdURL":
                doc[key] = "http://127.0.0.1:1"
            elif key in ("etcdCertFile", "etcdKeyFile", "etcdTrustedCAFileFile", "resolvConf", "subnetFile",
                         "readinessindicatorfile", "confDir"):  # fmt: skip
                doc[key] = os.path.join(tmp, "absent", key)
            else:
                _confine(value, tmp)
        if doc.get("type") == "host-local" and "dataDir" not in doc:
            doc["dataDir"] = os.path.join(tmp, "data")
    elif isinstance(doc, list):
        for item in doc:
            _confine(item, tmp)


def _paths(doc, prefix=()):
    yield prefix
    if len(prefix) > 12:
        return
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _mutate_doc(rng: random.Random, doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 4)):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = rng.random()
        if action < 0.5:
            parent[path[-1]] = copy.deepcopy(rng.choice(VALUES))
        elif action < 0.7 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.85 and isinstance(parent, dict):
            parent[rng.choice(["cniDir", "logFile", "logLevel", "delegateTimeout", "binaryDelegates", "masterplugin",
                               "runtimeConfig", "prevResult", "cni.dev/valid-attachments", "args", "ipam", "mtu",
                               "retryDeleteOnError", "interface", rng.choice(WEIRD)])] = copy.deepcopy(rng.choice(VALUES))  # fmt: skip
        else:  # nesting: deep documents must be refused as documents, not crash
            parent[path[-1]] = f"__DEEP__{rng.choice([2, 50, 3000, 100000])}"  # made into nested lists on the wire
    return doc


def _mutate_bytes(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 6)):
        pick = rng.random()
        pos = rng.randrange(len(data) + 1)
        if pick < 0.3 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif pick < 0.5:
            del data[pos:pos + rng.randint(1, 30)]
        elif pick < 0.7:
            data[pos:pos] = rng.choice([b"\x00", b"\xff\xfe", b'"', b"{", b"]", b"\\u0000", b"\xed\xa0\x80", b"1e999999"])
        else:
            data = data[:pos]
    return bytes(data)


def _case(rng: random.Random, seeds: list[dict], tmp: str, n: int) -> tuple[dict, bytes]:
    doc = copy.deepcopy(rng.choice(seeds))
    _confine(doc, tmp)
    if rng.random() < 0.8:
        doc = _mutate_doc(rng, doc)
        _confine(doc, tmp)
    # The state always goes to tmp: a mutated cniDir or logFile is kept only when it is harmless.
    for key, default in (("cniDir", os.path.join(tmp, "cache")), ("logFile", os.path.join(tmp, "log", "multipy.log"))):
        if isinstance(doc, dict) and not (isinstance(doc.get(key), str) and not doc[key].startswith("/")
                                          and rng.random() < 0.5):  # fmt: skip
            doc[key] = default
    raw = json.dumps(doc).encode()
    for depth in (2, 50, 3000, 100000):
        raw = raw.replace(f'"__DEEP__{depth}"'.encode(), b"[" * depth + b"1" + b"]" * depth)
    if rng.random() < 0.25:
        raw = _mutate_bytes(rng, raw)
    sane = rng.random() < 0.75  # most cases get a valid environment, so the conf and stdin are what is fuzzed
    env = {
        "CNI_COMMAND": rng.choice(["ADD", "ADD", "DEL", "DEL", "CHECK", "GC", "STATUS"] if sane else COMMANDS),
        "CNI_CONTAINERID": f"fuzz{n}" if sane else rng.choice([f"fuzz{n}", *WEIRD]),
        "CNI_NETNS": NETNS[1] if sane else rng.choice(NETNS),
        "CNI_IFNAME": "eth0" if sane else rng.choice(["eth0", *WEIRD]),
        "CNI_ARGS": rng.choice(["", "", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p", *WEIRD]),
        "CNI_PATH": rng.choice(["/nonexistent-fuzz-bin", "", "a:b:", os.path.join(tmp, "absent")]),
    }
    for key in list(env):
        if not sane and rng.random() < 0.07:
            del env[key]
    return env, raw


def _in_process(env: dict, raw: bytes) -> tuple[int, str]:
    out = io.StringIO()
    code = skel.run(build, environ=env, stdin=io.BytesIO(raw), stdout=out)
    return code, out.getvalue()


def _real(ns: str, env: dict, raw: bytes) -> tuple[int, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    environ.update({k: v for k, v in env.items() if "\x00" not in v})
    proc = subprocess.run(["ip", "netns", "exec", ns, executable()], input=raw, capture_output=True, env=environ, timeout=60)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def _verdict(env: dict, code: int, stdout: str) -> str | None:
    """None when the case ended as a CNI plugin must end; else what is wrong."""
    command = env.get("CNI_COMMAND", "")
    if code == 0:
        if command in ("ADD", "VERSION"):
            try:
                json.loads(stdout)
            except ValueError:
                return f"success without a JSON result: {stdout[:200]!r}"
        return None
    if code != 1:
        return f"exit code {code}"
    try:
        doc = json.loads(stdout)
    except ValueError:
        return f"failure without a JSON error: {stdout[:200]!r}"
    if not isinstance(doc, dict) or not isinstance(doc.get("code"), int) or not doc.get("msg"):
        return f"not a CNI error document: {stdout[:200]!r}"
    if doc["code"] == 999:
        return f"code 999: {doc['msg'][:300]}"
    return None


def _left_behind(tmp: str, ns: str) -> list[str]:
    found = []
    for top in ("cache", "data"):
        for directory, dirs, files in os.walk(os.path.join(tmp, top)):
            dirs[:] = [d for d in dirs if d != "internal"]
            for f in files:
                if not f.startswith("last_reserved_ip") and f != "lock":
                    found.append(os.path.join(directory, f))
    links = subprocess.run(["ip", "-n", ns, "-o", "link", "show"], capture_output=True, text=True).stdout
    extra = [line.split(":")[1].strip() for line in links.splitlines() if line.split(":")[1].strip() != "lo"]
    if extra:
        found.append(f"links {extra}")
    return found


def test_fuzz_the_executable(netns, tmp_path, record_property):
    print(f"\nMULTIPY_FUZZ_SEED={SEED} MULTIPY_FUZZ_CASES={CASES}")
    record_property("fuzz_seed", SEED)
    ns = netns("fuzz")  # the requests' own "host": whatever a host-side step does happens there
    tmp = str(tmp_path)
    rng = random.Random(SEED)
    seeds = _seeds(tmp)
    failures: list[str] = []
    codes: dict[int, int] = {}
    real_runs = 0

    def one(n: int) -> None:
        nonlocal real_runs
        env, raw = _case(rng, seeds, tmp, n)
        real = n % REAL_EVERY == 0
        if real:
            real_runs += 1
            code, stdout = _real(ns, env, raw)
        else:
            code, stdout = run_in(f"/run/netns/{ns}", _in_process, env, raw)
        verdict = _verdict(env, code, stdout)
        if code == 1 and verdict is None:
            err = json.loads(stdout)["code"]
            codes[err] = codes.get(err, 0) + 1
        if verdict is not None:
            failures.append(f"case {n} ({'executable' if real else 'in-process'}): {verdict}\n"
                            f"    env={env!r}\n    stdin={raw[:300]!r}")  # fmt: skip
        if code == 0 and env.get("CNI_COMMAND") == "ADD":
            # It worked: the runtime's DEL with the same input must undo it.
            gone = run_in(f"/run/netns/{ns}", _in_process, {**env, "CNI_COMMAND": "DEL"}, raw)
            if gone[0] != 0:
                failures.append(f"case {n}: DEL after a successful ADD failed: {gone[1][:300]}")

    for n in range(CASES):
        one(n)
    left = _left_behind(tmp, ns)
    print(f"fuzz: {CASES} cases ({real_runs} through the executable), error codes {dict(sorted(codes.items()))}, "
          f"{len(failures)} failure(s), left behind: {left or 'nothing'}")  # fmt: skip
    assert not left, f"seed {SEED}: left behind {left}"
    assert not failures, f"seed {SEED} (MULTIPY_FUZZ_SEED={SEED} replays): {len(failures)} case(s)\n" + "\n".join(failures[:15])


def test_version_with_deeply_nested_stdin_is_not_999():
    """Found by this fuzzer: VERSION's advisory stdin once hit RecursionError (code 999)."""
    code, stdout = _in_process({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": ' + b"[" * 100000 + b"]" * 100000 + b"}")
    assert _verdict({"CNI_COMMAND": "VERSION"}, code, stdout) is None, stdout


@pytest.mark.parametrize("delegates", [True, 1])
def test_non_list_delegates_is_a_config_error(tmp_path, delegates):
    conf = {"cniVersion": "0.3.1", "name": "x", "type": "multus-cni", "delegates": delegates,
            "cniDir": str(tmp_path / "cache")}
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": NETNS[1], "CNI_IFNAME": "eth0", "CNI_PATH": "/x"}
    code, stdout = _in_process(env, json.dumps(conf).encode())
    assert code == 1 and json.loads(stdout)["code"] == 7, stdout


def test_invalid_utf8_in_cni_ifname_is_not_999():
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": NETNS[1], "CNI_IFNAME": "\udcff", "CNI_PATH": "/x"}
    conf = {"cniVersion": "0.3.1", "name": "x", "type": "multus-cni", "delegates": [{"name": "lo", "type": "loopback"}]}
    code, stdout = _in_process(env, json.dumps(conf).encode())
    assert code == 1 and json.loads(stdout)["code"] == 4, stdout
