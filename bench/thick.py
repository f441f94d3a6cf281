"""Thick mode (multus-shim + `multipy daemon`) beside thin multipy and the Go delegates, on the seed topology.

    .venv/bin/python bench/thick.py [--runs N] [--cycles N] [--bursts 20,100] [--burst-runs N]
                                    [--no-kube-ipam] [--quick] [--workers N] [--cni-version V] [--bytecode-cache] [--json]

Needs root. bench/add_del.py's node netns (veth uplink0/uplink0p) and, per cycle and row, a fresh pod
netns; a subnet.env in a temp dir stands in for flanneld; one `multipy daemon` runs INSIDE the node
namespace (its socket dir in the temp dir), as the DaemonSet's hostNetwork pod would. Every row is
invoked as containerd would, under `ip netns exec <node>`, with the seed's conf: eth0 the flannel master
(bridge docker0 + host-local on the subnet.env's range), net1 macvlan on uplink0 + host-local:

  thick       multus-shim (the lone stdlib file a thick install puts in binDir, run with python -IS; that
              python is --shim-python, by default Debian's python3.11 as in the image's runtime tree),
              `"type": "multus-shim"`, `daemonSocketDir`; every delegate native, in the daemon.
              MULTIPY_THIN names no file, so a request that falls back to thin mode fails the bench.
  thin        multus-cni with the same conf, every delegate native, in one fresh process per call
  go-multipy  multus-cni with the Go delegates (binaryDelegates bridge, host-local, macvlan; the
              native flannel hands its bridge conf to the Go bridge)
  go-direct   the Go bridge with the conf flannel builds for it, then the Go macvlan (DEL: reverse):
              the floor any meta plugin adds to; two `ip netns exec` per operation, the others one
              (`ip netns exec <node> true` is a row of its own)
  thick-kube, thin-kube (unless --no-kube-ipam): net1 = macvlan + kube-ipam on a real etcd started in
              the node namespace (as bench/seed_native.py), a new dynamic pod each cycle

Rows are interleaved, rotated each round. After every ADD the pod must hold eth0 in the flannel subnet
and net1 in the dynamic range (checked untimed). Then:

  bursts      N pods at once (--bursts, default 20 and 100) per four-row, ADD then DEL: total wall
              time and per-call p50/p95; every pod checked and every address unique after the ADDs.
              --burst-runs per size and row, the median total counts; by default 5 of 20 pods or fewer
              (half a second each: one run is at the mercy of the machine's other work, the Go floor's
              total moved 262-364 ms between runs here) and 1 of more (the thin row takes ~35 s)
  memory      the daemon's VmRSS (its process tree, /proc/<pid>/status) at idle, after warm-up,
              before and after --cycles ADD/DEL cycles through the shim, and sampled every 5 ms
              during the thick bursts (the peak)
  shim        `python -I -S -c pass` (the floor of any stdlib shim), multus-shim VERSION (answered
              without the daemon), `multus-shim --probe healthz` and STATUS of a loopback-only conf
              (the shim's whole round trip to a daemon answering a no-op, GET and POST /cni) and the
              same GET /healthz from this process (no exec)

A failed call is reported, not hidden: a burst keeps its failures (and retries a failed DEL once, as
kubelet would), an interleaved or memory cycle is dropped from the figures and listed (the run stops
past MAX_FAILURES). The daemon's /metrics give its own time per command and per delegate type, and
its log's ERROR lines are counted. The exit code is 1 when anything failed or was left behind.

At the end no record, no host-local or kube-ipam lease and no flannel file may be left. The ratios
against go-direct are printed beside the issue's targets. Everything (namespaces, daemon, etcd, temp
dir) is removed in `finally` blocks. `--quick`: 5 runs, 100 cycles, one 20-pod burst. `--json` prints
the raw samples on stdout and the tables on stderr.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import sys
import tempfile
import threading
import time

import add_del
from add_del import (
    CNI_BIN,
    UPLINK,
    BenchError,
    Sides,
    Topology,
    bench_parser,
    checked_args,
    clean_env,
    median,
    p95,
    plugin_conf,
    publish,
    python_env_for,
    run,
)
from flannel import go_conf
from seed_native import check_pod, pod_request, seed_conf

from delegates.kube_ipam.records import PREFIX
from multipy import shim
from multipy.cli.install_files import shim_launcher
from multipy.net.netns import run_in
from multipy.testing import kernel
from multipy.testing.daemon import DaemonProcess
from multipy.testing.etcd import ETCD_BIN, EtcdCluster, EtcdStartError
from multipy.testing.flannel import write_subnet_env
from multipy.testing.topology import seed_delegates

ROWS = ("thick", "thin", "go-multipy", "go-direct")
KUBE_ROWS = ("thick-kube", "thin-kube")
FLOOR = "go-direct"
LABELS = {
    "thick": "multipy thick (multus-shim + daemon), native",
    "thin": "multipy thin (multus-cni), native",
    "go-multipy": "multipy thin + Go delegates (binaryDelegates)",
    "go-direct": "Go delegates called directly (the floor)",
    "thick-kube": "multipy thick, net1 kube-ipam (etcd)",
    "thin-kube": "multipy thin, net1 kube-ipam (etcd)",
}
GO_TYPES = ["bridge", "host-local", "macvlan"]
MiB = 1024 * 1024
# The targets (issue 12), as ratios in one run.
TARGET_ADD, TARGET_BURST, TARGET_IDLE_MIB, TARGET_GROWTH_MIB = 1.5, 1.5, 50.0, 5.0
DAEMON_START_TIMEOUT = 60.0
SAMPLE_EVERY = 0.005
CURVE_EVERY = 100  # memory cycles between two RSS samples of the growth curve
MAX_FAILURES = 5  # failed cycles tolerated (reported) before a run is aborted


# ---------------------------------------------------------------- confs


def native_conf(cni_version: str, tmp: str, row: str, etcd_config: dict | None = None) -> dict:
    """The seed's conf, every delegate native, its state under tmp/row: flannel master; net1 macvlan with
    host-local (the Go rows' net1), or with kube-ipam on `etcd_config`."""
    conf = seed_conf(cni_version, tmp, etcd_config or {})
    master, net1 = conf["delegates"]
    master = {**master, "dataDir": f"{tmp}/{row}/flannel", "ipam": {"dataDir": f"{tmp}/{row}/ipam"}}
    if etcd_config is None:
        net1 = seed_delegates(f"{tmp}/{row}/ipam", UPLINK)[1]
    return {**conf, "cniDir": f"{tmp}/{row}/cache", "delegates": [master, net1]}


def thick_conf(conf: dict, socket_dir: str) -> dict:
    return {**conf, "type": "multus-shim", "daemonSocketDir": socket_dir}


def direct_plugins(cni_version: str, tmp: str) -> list[tuple[str, str, dict]]:
    """go-direct: the bridge conf flannel hands its delegate, then the seed's macvlan + host-local."""
    bridge = go_conf(cni_version, tmp)
    bridge["ipam"]["dataDir"] = f"{tmp}/{FLOOR}/ipam"
    macvlan = plugin_conf(seed_delegates(f"{tmp}/{FLOOR}/ipam", UPLINK)[1], cni_version)
    return [("bridge", "eth0", bridge), ("macvlan", "net1", macvlan)]


def shim_python_default() -> str:
    """The interpreter `multipy install --thick` puts behind the shim is the runtime tree's: in the image,
    Debian's python3.11 (conf/image). The shim is stdlib-only, so that one runs it here too when the
    machine has it; else this interpreter."""
    shipped = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    return shipped if os.access(shipped, os.X_OK) else sys.executable


def lone_shim(tmp: str, python: str) -> str:
    """multus-shim exactly as `multipy install --thick` writes it: multipy/shim.py behind `#!python -IS`."""
    path = f"{tmp}/bin/multus-shim"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(shim_launcher(python))
    os.chmod(path, 0o755)
    return path


# ---------------------------------------------------------------- the daemon


def rss_bytes(pid: int) -> int:
    """VmRSS of `pid` and its descendants (a daemon with workers counts them all); 0 once gone."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/status") as f:
                total += next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo += [int(child) for child in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def status_field(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next((int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":")), 0)


class Daemon(DaemonProcess):
    """multipy.testing.daemon's process, in the node namespace, with what this bench reads from it."""

    def __init__(self, node: str, directory: str, env: dict, workers: int | None = None) -> None:
        os.makedirs(directory, exist_ok=True)
        extra = ("--workers", str(workers)) if workers else ()
        super().__init__(directory, *extra, env=env, log_level="error", host_netns=node)  # the daemon's default level

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"multipy daemon died (exit {self.proc.returncode}):\n{self.log()}")

    def served(self) -> dict:
        """From /metrics: /cni requests served by command (what proves the thick rows did not fall back),
        the daemon's own mean ms per command, and per delegate type and command."""
        from prometheus_client.parser import text_string_to_metric_families

        sums: dict = {}
        for family in text_string_to_metric_families(self.request("GET", "/metrics", timeout=10).body.decode()):
            if family.name not in ("multipy_request_duration_seconds", "multipy_delegate_duration_seconds"):
                continue
            for sample in family.samples:
                labels = sample.labels
                if family.name.startswith("multipy_request") and labels.get("endpoint", "").strip("/") != "cni":
                    continue
                key = labels.get("command", "?") if family.name.startswith("multipy_request") else \
                    f"{labels.get('type', '?')} {labels.get('command', '?')}"
                for suffix in ("_count", "_sum"):
                    if sample.name.endswith(suffix):
                        sums.setdefault(key, {"_count": 0.0, "_sum": 0.0})[suffix] += sample.value
        return {key: {"count": v["_count"], "mean_ms": v["_sum"] / v["_count"] * 1000 if v["_count"] else 0.0}
                for key, v in sums.items()}


class Sampler:
    """The daemon's RSS every SAMPLE_EVERY s while the `with` block runs: peak and samples."""

    def __init__(self, pid: int) -> None:
        self.pid, self.samples, self._stop = pid, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_bytes(self.pid))
            self._stop.wait(SAMPLE_EVERY)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)


# ---------------------------------------------------------------- rows


class Rows:
    """One add_del.Sides per row: the meta rows through their executable, go-direct plugin by plugin."""

    def __init__(self, topo: Topology, args, tmp: str, multus_cni: str, shim_path: str, python_env: dict,
                 socket_dir: str, etcd_config: dict | None) -> None:
        v = args.cni_version
        thick_env = {**python_env, shim.THIN_ENV: f"{tmp}/no-thin-fallback"}
        go = {**native_conf(v, tmp, "go-multipy"), "binDir": CNI_BIN, "binaryDelegates": GO_TYPES}
        self.sides = {
            "thick": Sides(topo, v, tmp, shim_path, thick_env, conf=thick_conf(native_conf(v, tmp, "thick"), socket_dir)),
            "thin": Sides(topo, v, tmp, multus_cni, python_env, conf=native_conf(v, tmp, "thin")),
            "go-multipy": Sides(topo, v, tmp, multus_cni, python_env, conf=go),
            FLOOR: Sides(topo, v, tmp, multus_cni, python_env, plugins=direct_plugins(v, tmp)),
        }
        if etcd_config is not None:
            def kube(row: str) -> dict:
                return pod_request(native_conf(v, tmp, row, etcd_config), "dynamic", "")[0]  # runtimeConfig: {}
            self.sides["thick-kube"] = Sides(topo, v, tmp, shim_path, thick_env,
                                             conf=thick_conf(kube("thick-kube"), socket_dir))
            self.sides["thin-kube"] = Sides(topo, v, tmp, multus_cni, python_env, conf=kube("thin-kube"))
        self.topo = topo

    @property
    def names(self) -> list[str]:
        return list(self.sides)

    def call(self, row: str, command: str, label: str, pod: str) -> float:
        cid = f"{self.topo.tag}-{label}"
        if row == FLOOR:
            return sum(self.sides[row].direct(command, cid, pod).values())
        return self.sides[row].multipy(command, cid, pod, CNI_ARGS=pod_request({}, "dynamic", label)[1])

    def cycle(self, row: str, label: str, check: bool = True) -> tuple[float, float]:
        """One fresh pod: ADD, check (untimed), DEL."""
        pod = self.topo.new_pod(label)
        try:
            try:
                add_ms = self.call(row, "ADD", label, pod)
            except BenchError:
                with contextlib.suppress(BenchError):  # as a runtime does: DEL what a failed ADD may have left
                    self.call(row, "DEL", label, pod)
                raise
            if check:
                check_pod("dynamic", pod)
            return add_ms, self.call(row, "DEL", label, pod)
        finally:
            self.topo.drop_pod(pod)


def interleaved(rows: Rows, runs: int) -> dict:
    names = rows.names
    samples: dict = {row: {"ADD": [], "DEL": []} for row in names}
    samples["netns_exec"], samples["failed"] = [], []
    for i in range(runs):
        for row in names[i % len(names):] + names[:i % len(names)]:  # rotated: drift spreads over every row
            try:
                add_ms, del_ms = rows.cycle(row, f"{row[:2]}{row[-1]}{i}")
            except BenchError as err:  # kept and reported; too many and the run is worthless
                samples["failed"].append(f"{row}: {str(err)[:300]}")
                if len(samples["failed"]) > MAX_FAILURES:
                    raise
                continue
            samples[row]["ADD"].append(add_ms)
            samples[row]["DEL"].append(del_ms)
        samples["netns_exec"].append(rows.sides[FLOOR].netns_exec())
    return samples


def burst(rows: Rows, row: str, size: int, tag: str, daemon: Daemon | None) -> dict:
    """`size` pods at once: all ADDs released together, checked, then all DELs (every pod's, so a failed
    ADD is cleaned up as a runtime would). Per-call ms and total ms of the calls that succeeded; the
    failures are kept, not raised: a burst that loses calls is a result (Multus #1346)."""
    pods = [(f"{tag}p{i}", rows.topo.new_pod(f"{tag}p{i}")) for i in range(size)]
    result: dict = {}
    try:
        for command in ("ADD", "DEL"):
            gate = threading.Barrier(size)
            spans: list = [None] * size

            def one(i: int, command: str = command, gate: threading.Barrier = gate, spans: list = spans) -> None:
                label, pod = pods[i]
                gate.wait()
                start = time.perf_counter()
                try:
                    spans[i] = (start, rows.call(row, command, label, pod), time.perf_counter())
                except BaseException as err:  # noqa: BLE001 - kept in the result
                    spans[i] = err

            threads = [threading.Thread(target=one, args=(i,)) for i in range(size)]
            with Sampler(daemon.pid) if daemon is not None else contextlib.nullcontext() as sampler:
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            done = [s for s in spans if not isinstance(s, BaseException)]
            result[command] = {"total_ms": (max(s[2] for s in done) - min(s[0] for s in done)) * 1000 if done else 0,
                               "calls_ms": [s[1] for s in done],
                               "failed": [str(s).splitlines()[0] + " " + str(s)[-300:].replace("\n", " ")
                                          for s in spans if isinstance(s, BaseException)]}
            if sampler is not None:
                result[command]["daemon_rss_peak"] = sampler.peak
            if command == "DEL":  # as kubelet does: a failed DEL is retried (untimed), its record kept for it
                for span, (label, pod) in zip(spans, pods, strict=True):
                    if isinstance(span, BaseException):
                        try:
                            rows.call(row, "DEL", label, pod)
                        except BenchError as err:
                            result["DEL"].setdefault("retry_failed", []).append(str(err)[:300])
            if command == "ADD":
                addresses = []
                for span, (_, pod) in zip(spans, pods, strict=True):
                    if not isinstance(span, BaseException):
                        check_pod("dynamic", pod)
                        found = kernel.addresses(pod)
                        addresses += [found["eth0"][0], found["net1"][0]]
                if len({ipaddress.ip_interface(a).ip for a in addresses}) != len(addresses):
                    raise BenchError(f"{row} {size}-pod burst handed out an address twice: {sorted(addresses)}")
        return result
    finally:
        for _, pod in pods:
            rows.topo.drop_pod(pod)


def memory_cycles(rows: Rows, daemon: Daemon, cycles: int, workers: int = 2) -> dict:
    """`cycles` thick ADD/DEL cycles (a fresh pod each), `workers` at a time; RSS before and after, and
    every CURVE_EVERY cycles: a leak grows with the cycles, an allocator warming up levels off."""
    before = rss_bytes(daemon.pid)
    curve: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    counter = iter(range(cycles))
    lock = threading.Lock()

    def work() -> None:
        while len(errors) <= MAX_FAILURES:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                rows.cycle("thick", f"m{i}", check=(i < workers))
            except BaseException as err:  # noqa: BLE001 - counted, re-raised past MAX_FAILURES
                errors.append(err)
            if (i + 1) % CURVE_EVERY == 0:
                with lock:
                    curve.append((i + 1, rss_bytes(daemon.pid)))

    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(errors) > MAX_FAILURES:
        raise BenchError(f"memory cycles: {len(errors)} failed; first: {errors[0]}")
    seconds = time.perf_counter() - started
    daemon.alive()
    return {"cycles": cycles, "seconds": seconds, "before": before, "after": rss_bytes(daemon.pid),
            "curve": sorted(curve), "failed": [str(e)[:300] for e in errors]}


def shim_round_trip(shim_path: str, shim_python: str, daemon: Daemon, runs: int, tmp: str) -> dict:
    # A no-op through POST /cni: STATUS of a conf whose one delegate is the native loopback.
    status_conf = json.dumps({"cniVersion": "1.1.0", "name": "noop", "type": "multus-shim", "cniDir": f"{tmp}/noop",
                              "daemonSocketDir": daemon.socket_dir, "delegates": [{"name": "lo", "type": "loopback"}]})
    probes = {
        "python -I -S -c pass": ([shim_python, "-I", "-S", "-c", "pass"], {}),
        "multus-shim VERSION (no daemon)": ([shim_path], {"CNI_COMMAND": "VERSION"}),
        "multus-shim --probe healthz": ([shim_path, "--probe", "healthz", "--socket-dir", daemon.socket_dir], {}),
        "multus-shim STATUS (POST /cni, native loopback)": ([shim_path], {"CNI_COMMAND": "STATUS",
                                                                          shim.THIN_ENV: f"{tmp}/no-thin-fallback"}),
    }
    console = os.path.join(os.path.dirname(sys.executable), "multus-shim")
    if os.access(console, os.X_OK):  # beside the lone file: what its compile-from-source costs
        probes["multus-shim VERSION, venv console script (site, .pyc)"] = ([console], {"CNI_COMMAND": "VERSION"})
    wall: dict[str, list[float]] = {name: [] for name in [*probes, "GET /healthz in process (no exec)"]}
    stdin = status_conf.encode()
    run([shim_path], stdin, clean_env(**probes["multus-shim STATUS (POST /cni, native loopback)"][1]), "STATUS warm-up")
    for _ in range(runs):
        for name, (argv, extra) in probes.items():
            wall[name].append(run(argv, stdin, env=clean_env(**extra), what=name)[0])
        start = time.perf_counter()
        status = daemon.request("GET", "/healthz", timeout=10).status
        wall["GET /healthz in process (no exec)"].append((time.perf_counter() - start) * 1000)
        if status != 200:
            raise BenchError(f"GET /healthz answered {status}")
    return wall


def leftovers(tmp: str, rows: list[str], node: str, etcd: EtcdCluster | None) -> list[str]:
    problems = []
    for row in rows:
        for sub, counts in (("flannel", lambda n: True), ("cache", lambda n: ":" in n)):
            path = f"{tmp}/{row}/{sub}"
            names = [n for n in os.listdir(path) if os.path.isfile(f"{path}/{n}")] if os.path.isdir(path) else []
            problems += [f"{row}: {sub} still holds {n}" for n in sorted(names) if counts(n)]
        ipam = f"{tmp}/{row}/ipam"
        for network in sorted(os.listdir(ipam)) if os.path.isdir(ipam) else []:
            held = [n for n in os.listdir(f"{ipam}/{network}") if n[0].isdigit()]
            problems += [f"{row}: host-local {network} still holds {n}" for n in sorted(held)]
    if etcd is not None:
        problems += [f"etcd still holds {k} = {v[:200]}" for k, v in run_in(f"/run/netns/{node}", etcd.keys, PREFIX).items()]
    return problems


def log_errors(path: str) -> dict[str, int]:
    """The daemon's ERROR lines (its default level), by message with the timestamp cut off."""
    found: dict[str, int] = {}
    with open(path, errors="replace") as f:
        for line in f:
            if " ERROR " in line:
                message = line.split(" ERROR ", 1)[1].strip()[:160]
                found[message] = found.get(message, 0) + 1
    return found


# ---------------------------------------------------------------- main


def bench(args, multus_cni: str, python_env: dict, tmp: str) -> dict:
    topo = Topology(f"mpt{os.getpid()}")
    etcd = EtcdCluster() if args.kube_ipam else None
    daemon = Daemon(topo.node, f"{tmp}/daemon", python_env, args.workers)
    socket_dir = daemon.socket_dir  # the daemon makes it (0700)
    samples: dict = {"loadavg": {"start": os.getloadavg()}}
    try:
        topo.open()
        if etcd is not None:
            run_in(f"/run/netns/{topo.node}", etcd.start)  # on the node's loopback, where the plugins run
        shim_path = lone_shim(tmp, args.shim_python)
        try:
            daemon.start(timeout=DAEMON_START_TIMEOUT)
        except RuntimeError as err:
            raise BenchError(str(err)) from None
        memory: dict = {"idle": rss_bytes(daemon.pid)}
        rows = Rows(topo, args, tmp, multus_cni, shim_path, python_env, socket_dir,
                    etcd.etcd_config() if etcd else None)
        # Uncounted: creates docker0, the entry-point indexes and conf stamps; the daemon's first requests.
        samples["warmup"] = {row: rows.cycle(row, f"w{row[:2]}{row[-1]}") for row in rows.names}
        memory["after_warmup"] = rss_bytes(daemon.pid)
        samples.update(interleaved(rows, args.runs))
        daemon.alive()
        samples["served"] = daemon.served()
        memory["cycles"] = memory_cycles(rows, daemon, args.cycles)
        samples["bursts"] = {}
        for size in args.bursts:
            for k in range(burst_runs(args, size)):
                names = list(ROWS[k % len(ROWS):] + ROWS[:k % len(ROWS)])
                for row in names:
                    got = burst(rows, row, size, f"b{size}{row[:2]}{row[-1]}{k}", daemon if row == "thick" else None)
                    samples["bursts"].setdefault(str(size), {}).setdefault(row, []).append(got)
        daemon.alive()
        memory["after_bursts"] = rss_bytes(daemon.pid)
        memory["hwm"] = status_field(daemon.pid, "VmHWM")
        samples["memory"] = memory
        samples["shim"] = shim_round_trip(shim_path, args.shim_python, daemon, args.runs, tmp)
        samples["left_behind"] = leftovers(tmp, rows.names, topo.node, etcd)
        samples["loadavg"]["end"] = os.getloadavg()
        samples["daemon_log_errors"] = log_errors(daemon.log_path)
        return samples
    finally:
        daemon.stop()
        if etcd is not None:
            etcd.close()
        problems = topo.close()
        if problems:
            print("\n".join(problems), file=sys.stderr)


def ratio(a: float, b: float) -> str:
    return f"{a / b:5.2f}x" if b else "   - "


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(samples: dict, args, out) -> None:
    def p(*a):
        print(*a, file=out)

    floor = samples[FLOOR]
    load = samples["loadavg"]
    p(f"\nThick mode on the seed topology, cniVersion {args.cni_version}, {args.runs} runs per row, interleaved, ms")
    p(f"  load average at start {load['start'][0]:.2f}, at end {load.get('end', (float('nan'),))[0]:.2f} "
      f"(2 cores shared with other work: absolute figures are noisy, ratios within one run less so)")
    p("  eth0: flannel (bridge docker0 + host-local on subnet.env); net1: macvlan on uplink0 + host-local")
    p(f"  {'':50}{'ADD':>8}{'p95':>8}{'DEL':>8}{'p95':>8}{'ADD/floor':>11}{'DEL/floor':>11}")

    def row(label: str, s: dict) -> None:
        p(f"  {label:50}{median(s['ADD']):8.1f}{p95(s['ADD']):8.1f}{median(s['DEL']):8.1f}{p95(s['DEL']):8.1f}"
          f"{ratio(median(s['ADD']), median(floor['ADD'])):>11}{ratio(median(s['DEL']), median(floor['DEL'])):>11}")

    for name in ROWS:
        row(LABELS[name], samples[name])
    if "thick-kube" in samples:
        p("  net1: macvlan + kube-ipam on a real etcd in the node (no Go twin; ratios against the same floor)")
        for name in KUBE_ROWS:
            row(LABELS[name], samples[name])
    e = samples["netns_exec"]
    p(f"  {'ip netns exec node true (go-direct pays 2, others 1)':50}{median(e):8.1f}{p95(e):8.1f}")
    served = samples.get("served") or {}
    commands = {k: v for k, v in served.items() if " " not in k}
    p("  daemon /metrics (warm-up and runs): " + ", ".join(f"{k} {v['count']:.0f} served, mean {v['mean_ms']:.1f} ms "
                                                          f"in the daemon" for k, v in commands.items())
      + "; thick rows cannot fall back (MULTIPY_THIN names no file)")
    delegates = {k: v for k, v in served.items() if " " in k}
    if delegates:
        p("    per delegate (mean ms, nested: flannel includes bridge, which includes host-local): "
          + ", ".join(f"{k} {v['mean_ms']:.1f}" for k, v in sorted(delegates.items())))
    for failure in samples.get("failed", []):
        p(f"  FAILED cycle (not in the figures): {failure[:220]}")
    errors = samples.get("daemon_log_errors") or {}
    p(f"  daemon log: {sum(errors.values())} ERROR lines" + "".join(f"\n      {n} x {m}" for m, n in
                                                              sorted(errors.items(), key=lambda kv: -kv[1])[:4]))
    w = samples["warmup"]
    p("  first (uncounted) cycles, ADD/DEL: " + ", ".join(f"{r} {a:.0f}/{d:.0f}" for r, (a, d) in w.items()))

    bursts = samples.get("bursts", {})
    for size, by_row in bursts.items():
        n = len(next(iter(by_row.values())))
        p(f"\nConcurrent burst of {size} pods, {n} run(s) per row (median total), ms")
        p(f"  {'':50}{'ADD total':>10}{'p50':>8}{'p95':>8}{'DEL total':>10}{'p50':>8}{'p95':>8}{'ADD/floor':>11}"
          f"{'failed':>8}")
        floor_total = median([r["ADD"]["total_ms"] for r in by_row[FLOOR]])
        for name in ROWS:
            runs = by_row[name]
            line = f"  {LABELS[name]:50}"
            for command in ("ADD", "DEL"):
                calls = [c for r in runs for c in r[command]["calls_ms"]] or [float("nan")]
                line += f"{median([r[command]['total_ms'] for r in runs]):10.0f}{median(calls):8.0f}{p95(calls):8.0f}"
            failed = [f"{cmd} {why}" for r in runs for cmd in ("ADD", "DEL") for why in r[cmd]["failed"]]
            p(line + f"{ratio(median([r['ADD']['total_ms'] for r in runs]), floor_total):>11}{len(failed):8}")
            for why in failed[:3]:
                p(f"      failed: {why[:220]}")
            retried = [why for r in runs for why in r["DEL"].get("retry_failed", [])]
            if any(r["DEL"]["failed"] for r in runs):
                p(f"      failed DELs retried once, untimed: {len(retried)} failed again")

    m = samples["memory"]
    c = m["cycles"]
    peaks = {size: max(r[cmd]["daemon_rss_peak"] for r in by_row["thick"] for cmd in ("ADD", "DEL"))
             for size, by_row in bursts.items()}
    growth = (c["after"] - c["before"]) / MiB
    p("\nDaemon memory (VmRSS of its process tree), MiB")
    p(f"  idle after start {m['idle'] / MiB:.1f}; after warm-up {m['after_warmup'] / MiB:.1f}; before "
      f"{c['cycles']} ADD/DEL cycles {c['before'] / MiB:.1f}, after {c['after'] / MiB:.1f} ({growth:+.1f}; "
      f"{c['cycles'] / c['seconds']:.1f} cycles/s, 2 at a time"
      f"{'; ' + str(len(c['failed'])) + ' FAILED: ' + c['failed'][0][:160] if c['failed'] else ''})")
    if c.get("curve"):
        p(f"  RSS every {CURVE_EVERY} cycles: " + ", ".join(f"{n} {v / MiB:.1f}" for n, v in c["curve"]))
    p("  burst peak (sampled every 5 ms): " + (", ".join(f"{s} pods {v / MiB:.1f}" for s, v in peaks.items()) or "-")
      + f"; after the bursts {m['after_bursts'] / MiB:.1f}; VmHWM {m['hwm'] / MiB:.1f}")

    p(f"\nThe shim's round trip, median of {args.runs}, ms (no netns exec; the shim's python: {args.shim_python})")
    for name, wall in samples["shim"].items():
        p(f"  {name:50}{median(wall):8.1f}   p95 {p95(wall):6.1f}")

    add = median(samples["thick"]["ADD"]) / median(floor["ADD"])
    p("\nTargets (issue 12), this run:")
    p(f"  thick ADD median / Go delegates direct        {add:5.2f}x   target <= {TARGET_ADD}x   {verdict(add <= TARGET_ADD)}")
    if "20" in bursts:
        b = bursts["20"]
        r20 = median([r["ADD"]["total_ms"] for r in b["thick"]]) / median([r["ADD"]["total_ms"] for r in b[FLOOR]])
        p(f"  20-pod burst total, thick / Go direct         {r20:5.2f}x   target <= {TARGET_BURST}x   "
          f"{verdict(r20 <= TARGET_BURST)}")
    else:
        p("  20-pod burst: not run (--bursts)")
    idle = m["idle"] / MiB
    p(f"  daemon RSS at idle                         {idle:6.1f} MiB  target <= {TARGET_IDLE_MIB:g} MiB  "
      f"{verdict(idle <= TARGET_IDLE_MIB)}")
    p(f"  RSS growth over {c['cycles']:>5} cycles                 {growth:+6.1f} MiB  target < {TARGET_GROWTH_MIB:g} MiB  "
      f"{verdict(growth < TARGET_GROWTH_MIB)}{'' if c['cycles'] >= 1000 else ' (fewer than the 1,000 the target names)'}")
    left = samples.get("left_behind") or []
    p("\nLeft behind after every DEL: " + ("nothing" if not left else "\n  " + "\n  ".join(left)))


def burst_runs(args, size: int) -> int:
    if args.burst_runs is not None:
        return args.burst_runs
    return 5 if size <= 20 else 1


def main() -> int:
    parser = bench_parser(__doc__, "0.3.1", min_runs=5)
    parser.add_argument("--cycles", type=int, default=1000, help="thick ADD/DEL cycles for the RSS growth")
    parser.add_argument("--bursts", default="20,100", help="burst sizes, comma-separated ('' for none)")
    parser.add_argument("--burst-runs", type=int, default=None,
                        help="bursts per size and row (default 5 for 20 pods or fewer, else 1)")
    parser.add_argument("--no-kube-ipam", dest="kube_ipam", action="store_false", help="skip the kube-ipam rows")
    parser.add_argument("--quick", action="store_true", help="5 runs, 100 cycles, one 20-pod burst")
    parser.add_argument("--workers", type=int, help="the daemon's --workers (default: the daemon's own default)")
    parser.add_argument("--shim-python", default=shim_python_default(),
                        help="the shim's interpreter (default: Debian's python3.x, the image's, when there)")
    go = [f"{CNI_BIN}/{p}" for p in GO_TYPES]
    args = checked_args(parser, [*go, (ETCD_BIN, "install Debian's etcd-server, or set ETCD_BIN")])
    args.bursts = [int(s) for s in args.bursts.split(",") if s.strip()]
    if args.quick:
        args.runs, args.cycles, args.bursts, args.burst_runs = 5, min(args.cycles, 100), [20], 1
    multus_cni = add_del.multus_cni_path(parser)
    if not os.access(os.path.join(os.path.dirname(sys.executable), "multipy"), os.X_OK):
        parser.error("the multipy console script is missing next to this interpreter")
    with tempfile.TemporaryDirectory(prefix="multipy-bench-thick-") as tmp:
        write_subnet_env(f"{tmp}/subnet.env")
        os.mkdir(f"{tmp}/no-binaries")
        python_env = python_env_for(args, tmp)
        try:
            samples = bench(args, multus_cni, python_env, tmp)
        except (BenchError, EtcdStartError) as err:
            print(f"benchmark aborted: {err}", file=sys.stderr)
            log = f"{tmp}/daemon/daemon.log"
            if os.path.exists(log):
                with open(log, errors="replace") as f:
                    print("daemon log (tail):\n" + "".join(f.readlines()[-20:]), file=sys.stderr)
            return 1
    publish(samples, args, report)
    failed = any(r[cmd]["failed"] for by_row in samples["bursts"].values() for runs in by_row.values()
                 for r in runs for cmd in ("ADD", "DEL"))
    return 1 if samples["left_behind"] or failed or samples["failed"] or samples["memory"]["cycles"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
