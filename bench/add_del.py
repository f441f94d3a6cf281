"""ADD/DEL latency of multipy's two-delegate topology versus the same Go delegates called directly.

    .venv/bin/python bench/add_del.py [--runs N] [--cni-version V] [--bytecode-cache] [--json]

Needs root. Builds a "node" netns holding a veth pair (uplink0 is the macvlan master)
and, per run and per side, a fresh "pod" netns. Each side is invoked as a runtime would,
under `ip netns exec <node>`:

  multipy  multus-cni with delegates bridge (master, eth0) and macvlan (net1)
  direct   /usr/lib/cni/bridge on eth0, then /usr/lib/cni/macvlan on net1 (DEL: reverse),
           each with the conf multipy would hand it (name and cniVersion injected)

The direct side pays `ip netns exec` once per plugin (twice per operation), multipy once,
so that cost is measured on its own (`ip netns exec <node> true`) and printed as a row.

Then start-up cost: `python -c pass`, multus-cni VERSION, Go bridge VERSION, and
`-X importtime` of multipy.entry (with the top 10 modules by cumulative time).

Everything created (namespaces, temp dirs) is removed in `finally` blocks; the bridge,
macvlan and veth links all live in the node and pod namespaces and go with them.
`--json` prints the raw samples as JSON on stdout and the tables on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

from multipy.testing.topology import seed_delegates

CNI_BIN = "/usr/lib/cni"
UPLINK, UPLINK_PEER = "uplink0", "uplink0p"
GO_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")  # what Debian's 1.1.1 plugins accept with 2+ interfaces


class BenchError(RuntimeError):
    pass


# ---------------------------------------------------------------- processes and statistics


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(extra)
    return env


def cached_bytecode_env(tmp: str) -> dict:
    """clean_env() with a bytecode cache under `tmp` (never in the source tree), written even where
    the machine sets PYTHONDONTWRITEBYTECODE."""
    return {k: v for k, v in clean_env(PYTHONPYCACHEPREFIX=f"{tmp}/pycache").items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(argv: list[str], stdin: bytes = b"", env: dict | None = None, what: str = "") -> tuple[float, bytes, bytes]:
    """Run argv; return (milliseconds, stdout, stderr). A non-zero exit aborts the benchmark."""
    start = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=120)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise BenchError(
            f"{what or argv[0]} exited {proc.returncode}\n  argv: {' '.join(argv)}\n"
            f"  stdout: {proc.stdout.decode(errors='replace').strip()[:800]}\n"
            f"  stderr: {proc.stderr.decode(errors='replace').strip()[:800]}"
        )
    return elapsed, proc.stdout, proc.stderr


def ip(*args: str) -> None:
    run(["ip", *args], what="ip " + " ".join(args))


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def p95(samples: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(0.95 * len(ordered))) - 1]


# ---------------------------------------------------------------- topology


def delegates(cni_version: str, tmp: str) -> list[dict]:
    return seed_delegates(f"{tmp}/ipam", UPLINK)


def multipy_conf(cni_version: str, tmp: str) -> dict:
    return {
        "cniVersion": cni_version,
        "name": "multipy-bench",
        "type": "multus-cni",
        "cniDir": f"{tmp}/multipy",
        "binDir": CNI_BIN,
        "delegates": delegates(cni_version, tmp),
        # This bench measures the meta layer: the same Go delegates with and without multipy.
        "binaryDelegates": ["bridge", "host-local", "macvlan"],
    }


def plugin_conf(delegate: dict, cni_version: str) -> dict:
    """What multipy (and libcni) hands a single delegate: its keys plus name and cniVersion."""
    return {**delegate, "cniVersion": cni_version}


class Topology:
    """The node namespace and a factory of pod namespaces, all removed by close()."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.node = f"{tag}-node"
        self.pods: list[str] = []
        self.made_node = False

    def open(self) -> None:
        ip("netns", "add", self.node)
        self.made_node = True
        ip("-n", self.node, "link", "set", "lo", "up")
        ip("-n", self.node, "link", "add", UPLINK, "type", "veth", "peer", "name", UPLINK_PEER)
        ip("-n", self.node, "link", "set", UPLINK, "up")
        ip("-n", self.node, "link", "set", UPLINK_PEER, "up")

    def new_pod(self, label: str) -> str:
        name = f"{self.tag}-{label}"
        ip("netns", "add", name)
        self.pods.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def drop_pod(self, name: str) -> None:
        ip("netns", "del", name)
        self.pods.remove(name)

    def close(self) -> list[str]:
        """Remove everything; returns the problems instead of raising, so cleanup always finishes."""
        problems = []
        for name in [*self.pods, *([self.node] if self.made_node else [])]:
            proc = subprocess.run(["ip", "netns", "del", name], capture_output=True)
            if proc.returncode != 0 and os.path.exists(f"/run/netns/{name}"):
                problems.append(f"could not remove netns {name}: {proc.stderr.decode().strip()}")
        self.pods.clear()
        self.made_node = False
        return problems


class Sides:
    """Invokes one ADD or DEL on either side and returns its latency in ms."""

    def __init__(self, topo: Topology, cni_version: str, tmp: str, multus_cni: str, python_env: dict,
                 conf: dict | None = None, plugins: list[tuple[str, str, dict]] | None = None) -> None:
        """`conf`: what multus_cni gets on stdin (default multipy_conf); `plugins`: the direct side's
        (binary, ifname, conf) in ADD order (default the bridge and macvlan of delegates())."""
        self.topo = topo
        self.cni_version = cni_version
        self.multipy_stdin = json.dumps(conf or multipy_conf(cni_version, tmp)).encode()
        if plugins is None:
            bridge, macvlan = delegates(cni_version, tmp)
            plugins = [("bridge", "eth0", plugin_conf(bridge, cni_version)),
                       ("macvlan", "net1", plugin_conf(macvlan, cni_version))]
        self.plugins = plugins
        self.multus_cni = multus_cni
        self.python_env = python_env
        # direct ADD results by (container, plugin), for DEL's prevResult from 0.4.0 on (pods may run concurrently)
        self.prev: dict[tuple[str, str], dict] = {}

    def _cni_env(self, base: dict, command: str, cid: str, pod: str, ifname: str) -> dict:
        return {**base, "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": f"/run/netns/{pod}",
                "CNI_IFNAME": ifname, "CNI_PATH": CNI_BIN}

    def in_node(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.topo.node, *argv]

    def multipy(self, command: str, cid: str, pod: str, **extra_env: str) -> float:
        return self.multipy_full(command, cid, pod, **extra_env)[0]

    def multipy_full(self, command: str, cid: str, pod: str, **extra_env: str) -> tuple[float, bytes, bytes]:
        env = self._cni_env({**self.python_env, **extra_env}, command, cid, pod, "eth0")
        return run(self.in_node([self.multus_cni]), self.multipy_stdin, env, what=f"multipy {command}")

    def direct(self, command: str, cid: str, pod: str) -> dict[str, float]:
        """Per-plugin ms; ADD runs bridge then macvlan, DEL the reverse."""
        order = self.plugins if command == "ADD" else list(reversed(self.plugins))
        times = {}
        for plugin, ifname, conf in order:
            prev = self.prev.pop((cid, plugin), None) if command == "DEL" else None
            if prev is not None and self.cni_version not in ("0.3.0", "0.3.1"):
                conf = {**conf, "prevResult": prev}
            env = self._cni_env(clean_env(), command, cid, pod, ifname)
            ms, out, _ = run(self.in_node([f"{CNI_BIN}/{plugin}"]), json.dumps(conf).encode(), env,
                             what=f"direct {plugin} {command}")
            if command == "ADD":
                self.prev[cid, plugin] = json.loads(out)
            times[plugin] = ms
        return times

    def netns_exec(self) -> float:
        return run(self.in_node(["true"]), env=clean_env(), what="ip netns exec true")[0]


def pod_links(pod: str) -> set[str]:
    _, out, _ = run(["ip", "-n", pod, "-o", "link", "show"], what="ip link show")
    return {line.split(":")[1].strip().split("@")[0] for line in out.decode().splitlines()}


def cycle(sides: Sides, side: str, label: str, check_links: bool = False) -> tuple[float, float, dict]:
    """One fresh pod: ADD then DEL on `side`; returns (add ms, del ms, per-plugin detail)."""
    pod = sides.topo.new_pod(label)
    try:
        cid = f"{sides.topo.tag}-{label}"
        if side == "multipy":
            add_ms, detail = sides.multipy("ADD", cid, pod), {}
        else:
            detail = {"ADD": sides.direct("ADD", cid, pod)}
            add_ms = sum(detail["ADD"].values())
        if check_links and not {"eth0", "net1"} <= pod_links(pod):
            raise BenchError(f"{side} ADD exited 0 but the pod has links {sorted(pod_links(pod))}, not eth0 + net1")
        if side == "multipy":
            del_ms = sides.multipy("DEL", cid, pod)
        else:
            detail["DEL"] = sides.direct("DEL", cid, pod)
            del_ms = sum(detail["DEL"].values())
        return add_ms, del_ms, detail
    finally:
        sides.topo.drop_pod(pod)


def lazy_imports(sides: Sides) -> dict[str, dict[str, float]]:
    """One extra, untimed cycle under PYTHONPROFILEIMPORTTIME: top-level imports made after multipy.entry."""
    pod = sides.topo.new_pod("imports")
    found = {}
    try:
        for command in ("ADD", "DEL"):
            _, _, err = sides.multipy_full(command, f"{sides.topo.tag}-imports", pod, PYTHONPROFILEIMPORTTIME="1")
            rows = parse_importtime(err.decode())
            entry = next(i for i, r in enumerate(rows) if r[0] == 0 and r[1] == "multipy.entry")
            found[command] = {r[1]: r[3] / 1000 for r in rows[entry + 1:] if r[0] == 0}
    finally:
        sides.topo.drop_pod(pod)
    return found


def bench_topology(runs: int, cni_version: str, multus_cni: str, python_env: dict, tmp: str) -> dict:
    topo = Topology(f"mpb{os.getpid()}")
    try:
        topo.open()
        sides = Sides(topo, cni_version, tmp, multus_cni, python_env)
        # Uncounted: creates cni0 and lets multipy stamp its validated conf, as on a live node.
        first = {side: cycle(sides, side, f"warm-{side[0]}", check_links=True)[:2] for side in ("multipy", "direct")}
        samples: dict = {"multipy": {"ADD": [], "DEL": []}, "direct": {"ADD": [], "DEL": []},
                         "direct_plugins": [], "netns_exec": [], "warmup": first}
        for i in range(runs):
            order = ("multipy", "direct") if i % 2 == 0 else ("direct", "multipy")
            for side in order:
                add_ms, del_ms, detail = cycle(sides, side, f"{side[0]}{i}")
                samples[side]["ADD"].append(add_ms)
                samples[side]["DEL"].append(del_ms)
                if detail:
                    samples["direct_plugins"].append(detail)
            samples["netns_exec"].append(sides.netns_exec())
        samples["lazy_imports"] = lazy_imports(sides)
        return samples
    finally:
        problems = topo.close()
        if problems:
            print("\n".join(problems), file=sys.stderr)


# ---------------------------------------------------------------- start-up and imports


def parse_importtime(stderr: str) -> list[tuple[int, str, int, int]]:
    """`-X importtime` lines as (depth, module, self us, cumulative us), in print order."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header
        name = parts[2][1:]
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((depth, name.strip(), int(parts[0]), int(parts[1])))
    return rows


def subtree(rows: list[tuple[int, str, int, int]], root: str) -> list[tuple[int, str, int, int]]:
    """`root` and everything it imported (children print before their parent)."""
    end = next(i for i, r in enumerate(rows) if r[0] == 0 and r[1] == root)
    start = end
    while start > 0 and rows[start - 1][0] > 0:
        start -= 1
    return rows[start:end + 1]


def bench_startup(runs: int, python: str, multus_cni: str, python_env: dict, cached_env: dict) -> dict:
    version_env = {"CNI_COMMAND": "VERSION"}
    probes = {
        "python -c pass": ([python, "-c", "pass"], python_env),
        "multus-cni VERSION": ([multus_cni], {**python_env, **version_env}),
        "multus-cni VERSION, bytecode cached": ([multus_cni], {**cached_env, **version_env}),
        "bridge VERSION (Go)": ([f"{CNI_BIN}/bridge"], clean_env(**version_env)),
    }
    importtime = [python, "-X", "importtime", "-c", "import multipy.entry"]
    wall: dict[str, list[float]] = {name: [] for name in probes}
    imports: dict[str, list] = {"as-is": [], "bytecode cached": []}
    run(importtime, env=cached_env, what="bytecode cache warm-up")  # fills the cache prefix
    for _ in range(runs):
        for name, (argv, env) in probes.items():
            wall[name].append(run(argv, env=env, what=name)[0])
        for label, env in (("as-is", python_env), ("bytecode cached", cached_env)):
            imports[label].append(parse_importtime(run(importtime, env=env, what="importtime")[2].decode()))
    return {"wall_ms": wall, "importtime": imports}


def summarize_imports(runs: list[list[tuple[int, str, int, int]]]) -> dict:
    totals = [sum(r[3] for r in rows if r[0] == 0) / 1000 for rows in runs]
    entry = [subtree(rows, "multipy.entry") for rows in runs]
    by_module: dict[str, dict] = defaultdict(lambda: {"self": [], "cum": [], "depth": 0})
    by_package: dict[str, list[float]] = defaultdict(list)
    for rows in entry:
        package_self: dict[str, float] = defaultdict(float)
        for depth, name, self_us, cum_us in rows:
            by_module[name]["self"].append(self_us / 1000)
            by_module[name]["cum"].append(cum_us / 1000)
            by_module[name]["depth"] = depth
            package_self[name.split(".")[0]] += self_us / 1000
        for package, ms in package_self.items():
            by_package[package].append(ms)
    return {
        "all_top_level_ms": median(totals),
        "entry_ms": median([rows[-1][3] / 1000 for rows in entry]),
        "entry_modules": median([len(rows) for rows in entry]),
        "modules": {n: {"self": median(v["self"]), "cum": median(v["cum"]), "depth": v["depth"]}
                    for n, v in by_module.items()},
        "packages": {p: median(v) for p, v in by_package.items()},
    }


# ---------------------------------------------------------------- report


def report_topology(samples: dict, args, out) -> None:
    def p(*a):
        print(*a, file=out)

    plugins = samples["direct_plugins"]
    per_plugin = {(cmd, name): median([d[cmd][name] for d in plugins]) for cmd in ("ADD", "DEL")
                  for name in ("bridge", "macvlan")}
    exec_med = median(samples["netns_exec"])
    p(f"\nADD/DEL latency, bridge (eth0) + macvlan (net1), cniVersion {args.cni_version}, "
      f"{args.runs} runs per side, ms")
    p(f"multipy python bytecode: {'cached (PYTHONPYCACHEPREFIX)' if args.bytecode_cache else 'environment as-is'}"
      f"{' (PYTHONDONTWRITEBYTECODE=1: project modules recompiled every exec)' if not args.bytecode_cache and os.environ.get('PYTHONDONTWRITEBYTECODE') else ''}")
    p(f"{'':24}{'multipy':>18}{'direct':>18}{'overhead':>11}")
    p(f"{'':24}{'median':>9}{'p95':>9}{'median':>9}{'p95':>9}{'median':>11}")
    for cmd in ("ADD", "DEL"):
        m, d = samples["multipy"][cmd], samples["direct"][cmd]
        p(f"{cmd:24}{median(m):9.1f}{p95(m):9.1f}{median(d):9.1f}{p95(d):9.1f}{median(m) - median(d):+11.1f}")
    e = samples["netns_exec"]
    p(f"{'ip netns exec node true':24}{median(e):9.1f}{p95(e):9.1f}{median(e):9.1f}{p95(e):9.1f}{'':>11}")
    p(f"  execs per operation: multipy 1, direct 2 (one per plugin). At equal exec count multipy costs "
      f"{median(samples['multipy']['ADD']) - median(samples['direct']['ADD']) + exec_med:+.1f} (ADD) / "
      f"{median(samples['multipy']['DEL']) - median(samples['direct']['DEL']) + exec_med:+.1f} (DEL) ms more.")
    p(f"  direct per plugin (median, incl. its exec): ADD bridge {per_plugin['ADD', 'bridge']:.1f} + macvlan "
      f"{per_plugin['ADD', 'macvlan']:.1f}; DEL macvlan {per_plugin['DEL', 'macvlan']:.1f} + bridge "
      f"{per_plugin['DEL', 'bridge']:.1f}")
    for cmd, modules in samples["lazy_imports"].items():
        heavy = sorted(modules.items(), key=lambda kv: -kv[1])[:4]
        p(f"  imported during multipy {cmd} after multipy.entry (one untimed call): {sum(modules.values()):.1f} ms"
          + (" — " + ", ".join(f"{k} {v:.1f}" for k, v in heavy) if heavy else ""))
    w = samples["warmup"]
    p(f"  first (uncounted) cycle, ADD/DEL: multipy {w['multipy'][0]:.1f}/{w['multipy'][1]:.1f}, "
      f"direct {w['direct'][0]:.1f}/{w['direct'][1]:.1f} (creates cni0; multipy validates its conf once)")


def report_startup(startup: dict, summaries: dict, runs: int, out) -> None:
    def p(*a):
        print(*a, file=out)

    p(f"\nStart-up, median of {runs} fresh processes, ms (no netns exec)")
    for name, samples in startup["wall_ms"].items():
        p(f"  {name:38}{median(samples):8.1f}   p95 {p95(samples):6.1f}")
    for label, s in summaries.items():
        p(f"  -X importtime, {label:23}all top-level {s['all_top_level_ms']:6.1f}   "
          f"multipy.entry {s['entry_ms']:6.1f} ({s['entry_modules']:.0f} modules)")
    s = summaries["as-is"]
    p("\nTop 10 modules by cumulative import time under multipy.entry (as-is, median ms; indent = depth)")
    p(f"  {'cumulative':>10} {'self':>7}  module")
    top = sorted(((n, m) for n, m in s["modules"].items() if n != "multipy.entry"), key=lambda nm: -nm[1]["cum"])
    for name, m in top[:10]:
        p(f"  {m['cum']:10.1f} {m['self']:7.1f}  {'  ' * (m['depth'] - 1)}{name}")
    packages = sorted(s["packages"].items(), key=lambda kv: -kv[1])[:8]
    p("  self time by top-level package: " + ", ".join(f"{k} {v:.1f}" for k, v in packages))


# ---------------------------------------------------------------- command line, shared by the benches


def bench_parser(doc: str, default_version: str = "0.3.1", min_runs: int = 5) -> argparse.ArgumentParser:
    """The options every bench takes: --runs, --cni-version, --bytecode-cache, --json."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help=f"cycles per row (min {min_runs})")
    parser.add_argument("--cni-version", default=default_version, choices=GO_VERSIONS)
    parser.add_argument("--bytecode-cache", action="store_true",
                        help="run Python with a bytecode cache in a temp dir (PYTHONPYCACHEPREFIX)")
    parser.add_argument("--json", action="store_true", help="raw samples as JSON on stdout; tables on stderr")
    parser.set_defaults(min_runs=min_runs)
    return parser


def checked_args(parser: argparse.ArgumentParser, binaries=(), root: bool = True) -> argparse.Namespace:
    """Parsed options, or a usage error when --runs is too low, root is missing or a binary is.

    `binaries`: paths, or (path, hint) pairs, that must be executable.
    """
    args = parser.parse_args()
    if args.runs < args.min_runs:
        parser.error(f"--runs must be at least {args.min_runs}")
    if root and os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    for item in binaries:
        path, hint = item if isinstance(item, tuple) else (item, "")
        if not os.access(path, os.X_OK):
            parser.error(f"{path} missing{f' ({hint})' if hint else ''}")
    return args


def python_env_for(args: argparse.Namespace, tmp: str) -> dict:
    """The environment multipy runs in: as this machine has it, or with --bytecode-cache a cache in `tmp`."""
    return cached_bytecode_env(tmp) if args.bytecode_cache else clean_env()


def publish(samples: dict, args: argparse.Namespace, report) -> int:
    """report(samples, args, out) as a table; with --json the table goes to stderr and raw samples to stdout."""
    report(samples, args, sys.stderr if args.json else sys.stdout)
    if args.json:
        json.dump({"args": vars(args), "samples_ms": samples}, sys.stdout, indent=1)
        print()
    return 0


def multus_cni_path(parser: argparse.ArgumentParser) -> str:
    """The multus-cni console script next to this interpreter (the venv's), else on PATH."""
    found = os.path.join(os.path.dirname(sys.executable), "multus-cni")
    return found if os.path.exists(found) else shutil.which("multus-cni") or parser.error("multus-cni not found")


# ---------------------------------------------------------------- main


def main() -> int:
    parser = bench_parser(__doc__, "0.3.1", min_runs=30)
    args = checked_args(parser, [f"{CNI_BIN}/{p}" for p in ("bridge", "macvlan", "host-local")])
    python = sys.executable
    multus_cni = multus_cni_path(parser)

    with tempfile.TemporaryDirectory(prefix="multipy-bench-") as tmp:
        cached_env = cached_bytecode_env(tmp)
        python_env = cached_env if args.bytecode_cache else clean_env()
        try:
            topology = bench_topology(args.runs, args.cni_version, multus_cni, python_env, tmp)
            startup = bench_startup(args.runs, python, multus_cni, clean_env(), cached_env)
        except BenchError as err:
            print(f"benchmark aborted: {err}", file=sys.stderr)
            return 1
    summaries = {label: summarize_imports(rows) for label, rows in startup["importtime"].items()}
    out = sys.stderr if args.json else sys.stdout
    report_topology(topology, args, out)
    report_startup(startup, summaries, args.runs, out)
    if args.json:
        json.dump({"args": vars(args), "topology_ms": topology, "startup_wall_ms": startup["wall_ms"],
                   "importtime": summaries}, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
