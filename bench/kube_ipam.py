"""ADD/DEL latency of the native kube-ipam (etcd) versus the Go host-local on the same range and work.

    .venv/bin/python bench/kube_ipam.py [--runs N] [--cni-version V] [--tls] [--bytecode-cache] [--json]

The range is the seed's net1 one (multipy.testing.topology.SEED_KUBE_IPAM: subnet 10.188.0.0/16,
dynamic 10.188.1.0-10.188.255.254, fixed 10.188.0.10-10.188.0.255). A real etcd (one member on
loopback, data in /dev/shm; --tls for client certificates) and a local Kubernetes API server are
started here. Every cycle is an ADD then a DEL with a fresh container ID on net1; IPAM plugins
enter no namespace, so CNI_NETNS is any string and no root is needed. Rows:

  own process   `python -m multipy.plugins.standalone kube-ipam`, exec'd as a runtime (or a main
                plugin) execs an IPAM plugin:
                  dynamic    the pod's annotations come in runtimeConfig (capability declared) and
                             ask for no address
                  fixed      they ask for kube-ipam.ip: the same pod name every cycle, so ADD re-binds
                             the pod's name-bound address and DEL unbinds it (a recreated pod)
                  fixed API  no capability: the annotations are read from the API via ipam.kubeConfig
  in process    KubeIpam called directly (add + result.to_json, delete) in a worker process; the
                same three cases with a fresh ClientPool per request, closed after it (what a
                one-shot process's Services has), then with one ClientPool kept across requests
                (Services.etcd / Services.kube from it), as a daemon keeps it
  go            /usr/lib/cni/host-local on the same range, files in a temp dataDir

Then start-up: `python -c pass`, and fresh interpreters importing what connect() loads
(multipy.clients.etcd, grpc, pyetcd), the plugin's own modules, and the Kubernetes client, each
timed from outside and with `-X importtime`. At the end nothing may be left reserved: etcd holds
only the fixed pods' unbound addresses and host-local's dataDir no address file. Everything started
(etcd, API server, worker) and the temp dirs are removed in `finally` blocks. `--json` prints raw
samples on stdout and the tables on stderr.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

from add_del import (
    CNI_BIN,
    BenchError,
    bench_parser,
    checked_args,
    clean_env,
    median,
    p95,
    parse_importtime,
    publish,
    python_env_for,
    run,
)

from delegates.kube_ipam.pods import ANNOTATIONS_CAPABILITY
from delegates.kube_ipam.records import PREFIX
from multipy.testing.etcd import ETCD_BIN, EtcdCluster, EtcdStartError
from multipy.testing.kube_api import KubeAPIServer
from multipy.testing.topology import SEED_KUBE_IPAM

NETWORK = "k8snet2"
NAMESPACE = "default"
IFNAME = "net1"
NETNS = "/run/netns/kube-ipam-bench"  # never entered: an IPAM plugin only allocates
NETMASK = "255.255.0.0"
DYNAMIC = (ipaddress.ip_address(SEED_KUBE_IPAM["rangeStart"]), ipaddress.ip_address(SEED_KUBE_IPAM["rangeEnd"]))
OWN_PROCESS = [sys.executable, "-m", "multipy.plugins.standalone", "kube-ipam"]
HOST_LOCAL = f"{CNI_BIN}/host-local"
IN_PROCESS_MODES = ("per-request", "reused")


@dataclass(frozen=True)
class Case:
    """One row's work: the pod, the address it asks for (None: dynamic), where its annotations come from."""

    key: str
    pod: str
    fixed_ip: str | None = None
    from_api: bool = False

    @property
    def uid(self) -> str:
        return f"uid-{self.pod}"

    def annotations(self) -> dict[str, str]:
        if self.fixed_ip is None:
            return {"app": self.pod.rsplit("-", 1)[0]}
        return {"kube-ipam.ip": self.fixed_ip, "kube-ipam.netmask": NETMASK}

    def cni_args(self, cid: str) -> str:
        """What containerd passes every plugin of a pod."""
        return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NAMESPACE};K8S_POD_NAME={self.pod};"
                f"K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID={self.uid}")


# Each case has its own pod and fixed address, so no two rows touch the same reservation.
OWN_CASES = {"dynamic": Case("dyn", "web-0"), "fixed": Case("fix", "db-0", "10.188.0.218"),
             "fixed API": Case("api", "db-1", "10.188.0.219", from_api=True)}
IN_PROCESS_CASES = {
    mode: {"dynamic": Case(f"{m}dyn", f"web-{n}"), "fixed": Case(f"{m}fix", f"db-{2 * n}", f"10.188.0.{218 + 2 * n}"),
           "fixed API": Case(f"{m}api", f"db-{2 * n + 1}", f"10.188.0.{219 + 2 * n}", from_api=True)}
    for n, (mode, m) in enumerate(zip(IN_PROCESS_MODES, ("p", "r"), strict=True), start=1)
}
ALL_CASES = [*OWN_CASES.values(), *(c for cases in IN_PROCESS_CASES.values() for c in cases.values())]


def kube_ipam_conf(cni_version: str, etcd_config: dict, kubeconfig: str, case: Case) -> dict:
    """What a runtime hands the main plugin, and the main plugin its IPAM: the seed's block, pointed here."""
    ipam = {**json.loads(json.dumps(SEED_KUBE_IPAM)), "etcdConfig": etcd_config, "kubeConfig": kubeconfig}
    conf = {"cniVersion": cni_version, "name": NETWORK, "type": "macvlan", "ipam": ipam}
    if not case.from_api:
        conf["capabilities"] = {ANNOTATIONS_CAPABILITY: True}
        conf["runtimeConfig"] = {ANNOTATIONS_CAPABILITY: case.annotations()}
    return conf


def host_local_conf(cni_version: str, data_dir: str) -> dict:
    ipam = {k: SEED_KUBE_IPAM[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway", "routes")}
    return {"cniVersion": cni_version, "name": NETWORK, "type": "macvlan",
            "ipam": {"type": "host-local", **ipam, "dataDir": data_dir}}


def check_added(what: str, result: dict, case: Case | None) -> None:
    """An ADD that exits 0 with the wrong address must not be timed as a success."""
    ips = result.get("ips") or []
    got = ipaddress.ip_interface(ips[0]["address"]).ip if len(ips) == 1 else None
    if case is not None and case.fixed_ip is not None:
        ok = got == ipaddress.ip_address(case.fixed_ip)
    else:
        ok = got is not None and DYNAMIC[0] <= got <= DYNAMIC[1]
    if not ok:
        raise BenchError(f"{what} ADD returned {result}, not {case.fixed_ip if case and case.fixed_ip else 'one dynamic address'}")


def with_prev(cni_version: str, conf: dict, result: dict) -> dict:
    """DEL carries the ADD's result from 0.4.0 on, as libcni's cached one."""
    return conf if cni_version in ("0.3.0", "0.3.1") else {**conf, "prevResult": result}


# ---------------------------------------------------------------- own-process rows and Go


class Execs:
    """One ADD or DEL of a row, exec'd as a runtime does; returns its latency in ms."""

    def __init__(self, cni_version: str, etcd: EtcdCluster, api: KubeAPIServer, tmp: str, python_env: dict) -> None:
        self.cni_version = cni_version
        # The entry-point index a multus-cni install keeps in its cniDir; without it every exec rescans.
        self.python_env = {**python_env, "MULTIPY_ENTRY_POINTS_INDEX": f"{tmp}/entry-points.json"}
        self.confs = {row: kube_ipam_conf(cni_version, etcd.etcd_config(), api.kubeconfig, case)
                      for row, case in OWN_CASES.items()}
        self.host_local_dir = f"{tmp}/host-local"
        self.confs["go"] = host_local_conf(cni_version, self.host_local_dir)
        self.tag = f"mpk{os.getpid()}"

    def call(self, row: str, command: str, cid: str, prev: dict | None = None) -> tuple[float, dict]:
        case = OWN_CASES.get(row, Case("go", "web-go"))
        go = row == "go"
        env = {**(clean_env() if go else self.python_env), "CNI_COMMAND": command, "CNI_CONTAINERID": cid,
               "CNI_NETNS": NETNS, "CNI_IFNAME": IFNAME, "CNI_ARGS": case.cni_args(cid), "CNI_PATH": CNI_BIN}
        conf = self.confs[row] if prev is None else with_prev(self.cni_version, self.confs[row], prev)
        ms, out, _ = run([HOST_LOCAL] if go else OWN_PROCESS, json.dumps(conf).encode(), env, what=f"{row} {command}")
        return ms, json.loads(out) if out.strip() else {}

    def cycle(self, row: str, label: str) -> tuple[float, float]:
        cid = f"{self.tag}-{row.replace(' ', '')}-{label}"
        add_ms, result = self.call(row, "ADD", cid)
        check_added(row, result, OWN_CASES.get(row))
        del_ms, _ = self.call(row, "DEL", cid, prev=result)
        return add_ms, del_ms


def own_process(execs: Execs, runs: int) -> dict:
    rows = [*OWN_CASES, "go"]
    # Uncounted: creates the fixed reservations and the entry-point index, warms the page cache.
    samples: dict = {"warmup": {row: execs.cycle(row, "warm") for row in rows}}
    samples.update({row: {"ADD": [], "DEL": []} for row in rows})
    for i in range(runs):
        for row in rows[i % len(rows):] + rows[:i % len(rows)]:  # rotated: drift spreads over every row
            add_ms, del_ms = execs.cycle(row, str(i))
            samples[row]["ADD"].append(add_ms)
            samples[row]["DEL"].append(del_ms)
    return samples


# ---------------------------------------------------------------- in-process rows (a worker process)


def worker(params: dict) -> dict:
    """Times KubeIpam.add (+ result.to_json) and .delete in this process, one plugin per mode kept throughout."""
    from delegates.kube_ipam import KubeIpam
    from multipy.clients.pool import ClientPool
    from multipy.cni.env import Environment
    from multipy.plugins.contract import Services

    version, runs, tag = params["cniVersion"], params["runs"], params["tag"]
    samples: dict = {}
    for mode in IN_PROCESS_MODES:
        kept = ClientPool() if mode == "reused" else None

        def call(method: str, inv, conf, kept=kept):
            clients = kept or ClientPool()
            try:
                return getattr(KubeIpam(Services(etcd=clients.etcd, kube=clients.kube)), method)(inv, conf)
            finally:
                if clients is not kept:
                    clients.close()

        cases = {row: Case(**c) for row, c in params["cases"][mode].items()}
        confs = {row: kube_ipam_conf(version, params["etcdConfig"], params["kubeconfig"], c) for row, c in cases.items()}
        rows = list(cases)
        times: dict = {row: {"ADD": [], "DEL": [], "first": []} for row in rows}
        try:
            for i in range(runs + 1):
                for row in rows[i % len(rows):] + rows[:i % len(rows)]:
                    case, cid = cases[row], f"{tag}-{cases[row].key}-{i}"
                    start = time.perf_counter()
                    result = call("add", Environment("ADD", cid, NETNS, IFNAME, case.cni_args(cid), (CNI_BIN,)),
                                  confs[row]).to_json(version)
                    add_ms = (time.perf_counter() - start) * 1000
                    check_added(f"in-process {mode} {row}", result, case)
                    inv = Environment("DEL", cid, NETNS, IFNAME, case.cni_args(cid), (CNI_BIN,))
                    start = time.perf_counter()
                    call("delete", inv, with_prev(version, confs[row], result))
                    del_ms = (time.perf_counter() - start) * 1000
                    if i == 0:  # imports grpc (and kubernetes), creates the fixed reservation: uncounted
                        times[row]["first"] = [add_ms, del_ms]
                    else:
                        times[row]["ADD"].append(add_ms)
                        times[row]["DEL"].append(del_ms)
        finally:
            if kept is not None:
                kept.close()
        samples[mode] = times
    return samples


def in_process(runs: int, cni_version: str, etcd: EtcdCluster, api: KubeAPIServer, python_env: dict) -> dict:
    params = {"cniVersion": cni_version, "runs": runs, "tag": f"mpk{os.getpid()}", "etcdConfig": etcd.etcd_config(),
              "kubeconfig": api.kubeconfig,
              "cases": {mode: {row: asdict(c) for row, c in cases.items()} for mode, cases in IN_PROCESS_CASES.items()}}
    _, out, _ = run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(params)], env=python_env,
                    what="in-process worker")
    return json.loads(out)


# ---------------------------------------------------------------- nothing left behind


def leftovers(etcd: EtcdCluster, host_local_dir: str) -> list[str]:
    """What the cycles left reserved: every DEL must have released its attachment."""
    problems = []
    fixed = {c.fixed_ip: c for c in ALL_CASES if c.fixed_ip}
    for key, value in etcd.keys(PREFIX).items():
        record = json.loads(value) if value.startswith("{") else {}
        ip = key.rpartition("/ips/")[2] if "/ips/" in key else None
        # A fixed address stays reserved for its pod's name, with no container: that is the design.
        if ip in fixed and record.get("containerID") == "" and record.get("pod") == f"{NAMESPACE}/{fixed[ip].pod}":
            continue
        problems.append(f"etcd still holds {key} = {value[:200]}")
    network_dir = os.path.join(host_local_dir, NETWORK)
    for name in sorted(os.listdir(network_dir)) if os.path.isdir(network_dir) else []:
        if name != "lock" and not name.startswith("last_reserved_ip"):
            problems.append(f"host-local still holds {name}")
    return problems


# ---------------------------------------------------------------- start-up and imports

IMPORT_PROBES = {
    "etcd client": "import multipy.clients.etcd; import grpc; import pyetcd.etcdrpc",
    "plugin": "import multipy.plugins.standalone; import delegates.kube_ipam",
    "kubernetes client": "import multipy.clients.kube; import urllib3; from kubernetes import client, config",
}
PROBE_TITLES = {
    "etcd client": "multipy.clients.etcd + what connect() loads (grpc, pyetcd)",
    "plugin": "standalone runner + delegates.kube_ipam (every own-process row)",
    "kubernetes client": "multipy.clients.kube + kubernetes (the API rows)",
}


def top_level_imports(stderr: str) -> dict[str, list[float]]:
    """[self, cumulative] ms of each module the -c code imported at top level (after interpreter start-up)."""
    rows = parse_importtime(stderr)
    after_site = next(i for i, r in enumerate(rows) if r[0] == 0 and r[1] == "site") + 1
    return {name: [own / 1000, cum / 1000] for depth, name, own, cum in rows[after_site:] if depth == 0}


def bench_startup(runs: int, python_env: dict) -> dict:
    python = sys.executable
    wall: dict[str, list[float]] = {"pass": [], **{name: [] for name in IMPORT_PROBES}}
    imports: dict[str, list[dict[str, list[float]]]] = {name: [] for name in IMPORT_PROBES}
    for _ in range(runs):
        wall["pass"].append(run([python, "-c", "pass"], env=python_env, what="python -c pass")[0])
        for name, code in IMPORT_PROBES.items():
            wall[name].append(run([python, "-c", code], env=python_env, what=f"import {name}")[0])
            _, _, err = run([python, "-X", "importtime", "-c", code], env=python_env, what=f"importtime {name}")
            imports[name].append(top_level_imports(err.decode()))
    return {"wall_ms": wall, "importtime_ms": imports}


# ---------------------------------------------------------------- main


def bench(args, python_env: dict, tmp: str) -> dict:
    etcd = EtcdCluster(tls=args.tls)
    try:
        etcd.start()
        os.makedirs(f"{tmp}/kube")
        api = KubeAPIServer(directory=f"{tmp}/kube")  # its kubeconfig goes with tmp
        try:
            api.start()
            for case in ALL_CASES:
                if case.from_api:
                    api.add_pod(NAMESPACE, case.pod, annotations=case.annotations(), uid=case.uid)
            execs = Execs(args.cni_version, etcd, api, tmp, python_env)
            samples = own_process(execs, args.runs)
            samples["in-process"] = in_process(args.runs, args.cni_version, etcd, api, python_env)
            problems = leftovers(etcd, execs.host_local_dir)
            if problems:
                raise BenchError("reservations left after every DEL:\n  " + "\n  ".join(problems))
        finally:
            api.close()
    finally:
        etcd.close()
    samples["startup"] = bench_startup(args.runs, python_env)
    return samples


def report(samples: dict, args, out) -> None:
    def p(*a):
        print(*a, file=out)

    def row(label: str, s: dict) -> None:
        p(f"  {label:56}{median(s['ADD']):9.1f}{p95(s['ADD']):9.1f}{median(s['DEL']):9.1f}{p95(s['DEL']):9.1f}")

    etcd = f"1 etcd member on loopback ({'TLS, client certs' if args.tls else 'plain'}; data on tmpfs)"
    p(f"\nkube-ipam ADD/DEL on the seed's net1 range (10.188.0.0/16, dynamic {DYNAMIC[0]}-{DYNAMIC[1]}), "
      f"cniVersion {args.cni_version}, {etcd}, {args.runs} runs per row, ms (median / p95)")
    p(f"  {'':56}{'ADD':>9}{'p95':>9}{'DEL':>9}{'p95':>9}")
    p("own process: python -m multipy.plugins.standalone kube-ipam")
    row("kube-ipam dynamic (annotations from runtimeConfig)", samples["dynamic"])
    row("kube-ipam fixed, annotations from runtimeConfig", samples["fixed"])
    row("kube-ipam fixed, annotations from the API (kubeConfig)", samples["fixed API"])
    ip = samples["in-process"]
    p("in process: clients made and closed per request (a fresh ClientPool each)")
    for label in ("dynamic", "fixed", "fixed API"):
        row(f"kube-ipam {label}", ip["per-request"][label])
    p("in process: clients made once (one ClientPool kept, as a daemon keeps it)")
    for label in ("dynamic", "fixed", "fixed API"):
        row(f"kube-ipam {label}", ip["reused"][label])
    p("Go")
    row("/usr/lib/cni/host-local, same range, temp dataDir", samples["go"])

    w = samples["warmup"]
    p("  first (uncounted) cycles, ADD/DEL: " + ", ".join(f"{r} {a:.1f}/{d:.1f}" for r, (a, d) in w.items()))
    for mode in IN_PROCESS_MODES:
        p(f"    in process, {mode}: " + ", ".join(f"{r} {t['first'][0]:.1f}/{t['first'][1]:.1f}"
                                               for r, t in ip[mode].items()))

    s = samples["startup"]
    base = median(s["wall_ms"]["pass"])
    p(f"\nStart-up, median of {args.runs} fresh interpreters, ms (wall from outside; -X importtime, cumulative)")
    p(f"  {'python -c pass':66}{base:8.1f}")
    for name, title in PROBE_TITLES.items():
        wall = s["wall_ms"][name]
        modules = s["importtime_ms"][name]
        parts = {m: [median([r.get(m, [0.0, 0.0])[i] for r in modules]) for i in (0, 1)] for m in modules[0]}
        p(f"  {title:66}{median(wall):8.1f}   p95 {p95(wall):6.1f}   (+{median(wall) - base:.1f} over pass)")
        p(f"    -X importtime: total {median([sum(c for _, c in r.values()) for r in modules]):.1f} = "
          + " + ".join(f"{m} {cum:.1f} (self {own:.1f})" for m, (own, cum) in parts.items()))

    p("\nWhat each row includes")
    p("  own process: interpreter start, imports (runner, plugin, grpc + pyetcd; kubernetes in the API row), entry-point")
    p("    index read, conf checks, a new etcd client and connection, 3 etcd round trips (ADD: owner get, block read or")
    p("    lease get, txn; DEL: owner get, lease get, txn), JSON out; the API row adds a kubeconfig load and a pod GET")
    p("  dynamic: the capability is declared and the annotations ask for no address; a dynamic pod on a network")
    p("    without it reads the API on every ADD, like the fixed API row")
    p("  fixed: one pod name per row, a fresh container ID per cycle (a recreated pod): ADD re-binds the pod's")
    p("    name-bound address, DEL unbinds it; the uncounted first ADD created it (one etcd get more)")
    p("  in process: no start-up or imports (first cycle excluded), no stdin/stdout; per request: a client and a")
    p("    gRPC connection (and a kubeconfig load) every call; made once: those are kept, as a daemon's would be")
    p("  go: process start, a lock file, one file per address and last_reserved_ip in a local dir (ext4, no fsync),")
    p("    no network; node-local state only (no fixed addresses, no cross-node store)")
    p("  etcd runs on tmpfs: an etcd on disk adds its fsync to every ADD and DEL txn")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        json.dump(worker(json.loads(sys.argv[2])), sys.stdout)
        return 0
    parser = bench_parser(__doc__, "1.0.0")
    parser.add_argument("--tls", action="store_true", help="etcd serves TLS with client certificates")
    # IPAM plugins need no namespace: no root needed.
    args = checked_args(parser, [HOST_LOCAL, (ETCD_BIN, "install Debian's etcd-server, or set ETCD_BIN")], root=False)
    with tempfile.TemporaryDirectory(prefix="multipy-bench-kube-ipam-") as tmp:
        python_env = python_env_for(args, tmp)
        try:
            samples = bench(args, python_env, tmp)
        except (BenchError, EtcdStartError) as err:
            print(f"benchmark aborted: {err}", file=sys.stderr)
            return 1
    return publish(samples, args, report)


if __name__ == "__main__":
    sys.exit(main())
