"""ADD/DEL of the whole seed through multus-cni with multipy's own delegates, beside the Go stack.

    .venv/bin/python bench/seed_native.py [--runs N] [--cni-version V] [--bytecode-cache] [--json]

Needs root. bench/add_del.py's node netns (veth uplink0/uplink0p) and, per cycle and row, a fresh
pod netns. A real etcd (one member, data on /dev/shm) is started INSIDE the node namespace, where
multus-cni runs, and a subnet.env in a temp dir stands in for flanneld. Every row is invoked as
containerd would, under `ip netns exec <node>`:

  native     multus-cni with the seed's conf and no plugin binary anywhere (binDir and CNI_PATH
             empty): eth0 is the flannel master (bridge docker0, isDefaultGateway, mtu 1400, native
             bridge + host-local), net1 the macvlan on uplink0 with kube-ipam on that etcd, pod
             annotations handed over in runtimeConfig (io.kubernetes.cri.pod-annotations):
               dynamic   a new web pod each cycle, no annotation
               fixed     database-1's annotations (kube-ipam.ip 10.188.0.218): the same pod name
                         every cycle with a new container ID, so ADD re-binds its address, DEL unbinds
               api       the dynamic row with the meta plugin's own `kubeconfig`: the local Kubernetes
                         API (in the node namespace) serves the pod; ADD reads it (1 GET), writes its
                         network-status (1 PATCH of pods/status) and posts 2 AddedInterface events
  in process the native rows through multipy.entry.build in one running interpreter (a worker under
             `ip netns exec <node>`; plugin registry kept, clients made per request as in a process)
  go         bench/add_del.py's two rows: multus-cni with the Go delegates (binaryDelegates bridge,
             host-local, macvlan) and the same Go delegates invoked directly

After each ADD the pod must hold eth0 in the flannel subnet and net1 at the expected address (checked
untimed). Five more, untimed, native cycles run under -X importtime to show what a native ADD/DEL imports.
At the end etcd may hold only database-1's unbound address, and no attachment may be left on disk.
Everything (namespaces, etcd, worker, temp dirs) is removed in `finally` blocks. `--json` prints the
raw samples on stdout and the table on stderr.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time

import add_del
from add_del import (
    UPLINK,
    BenchError,
    Topology,
    bench_parser,
    checked_args,
    median,
    p95,
    parse_importtime,
    publish,
    python_env_for,
    run,
)
from flannel import flannel_conf

from delegates.kube_ipam.pods import ANNOTATIONS_CAPABILITY
from delegates.kube_ipam.records import PREFIX
from multipy.k8s.selection import STATUS_ANNOTATION
from multipy.net.netns import run_in
from multipy.testing import kernel
from multipy.testing.etcd import ETCD_BIN, EtcdCluster, EtcdStartError
from multipy.testing.flannel import DEFAULT_SUBNET_ENV, write_subnet_env
from multipy.testing.kube_api import KubeAPIServer
from multipy.testing.topology import SEED_KUBE_IPAM

NATIVE_ROWS = ("dynamic", "fixed")
API_ROW = "api"
GO_ROWS = ("multipy", "direct")  # add_del.Sides' names
FIXED_POD = "database-1"
FIXED_ANNOTATIONS = {"kube-ipam.ip": "10.188.0.218", "kube-ipam.netmask": "255.255.0.0",
                     "kube-ipam.gateway": "10.188.0.1"}
DYNAMIC = (ipaddress.ip_address(SEED_KUBE_IPAM["rangeStart"]), ipaddress.ip_address(SEED_KUBE_IPAM["rangeEnd"]))
IMPORT_RUNS = 5  # untimed cycles under -X importtime, for the median of each part
FLANNEL_SUBNET = ipaddress.ip_interface(DEFAULT_SUBNET_ENV["FLANNEL_SUBNET"]).network


# ---------------------------------------------------------------- the seed's conf and one pod's request


def seed_conf(cni_version: str, tmp: str, etcd_config: dict) -> dict:
    """The seed's 10-multus.conf, every delegate native, its state under tmp (as the seed scenario test)."""
    master = {k: v for k, v in flannel_conf(cni_version, tmp).items() if k != "cniVersion"}
    net1 = {
        "name": "k8snet2", "type": "macvlan", "master": UPLINK, "mode": "bridge",
        "capabilities": {ANNOTATIONS_CAPABILITY: True},
        # No API is reachable: the annotations must come from the runtime, never from a kubeconfig.
        "ipam": {**json.loads(json.dumps(SEED_KUBE_IPAM)), "etcdConfig": etcd_config,
                 "kubeConfig": f"{tmp}/no-such-kubeconfig"},
    }  # fmt: skip
    return {"cniVersion": cni_version, "name": "multus-demo", "type": "multus-cni", "cniDir": f"{tmp}/native-cache",
            "binDir": f"{tmp}/no-binaries", "delegates": [{**master, "masterplugin": True}, net1]}


def pod_request(conf: dict, row: str, label: str) -> tuple[dict, str]:
    """The conf with this pod's runtimeConfig, and CNI_ARGS, as containerd hands them to multus-cni."""
    pod, annotations = (FIXED_POD, FIXED_ANNOTATIONS) if row == "fixed" else (f"web-{label}", {})
    args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_UID=uid-{label}"
    return {**conf, "runtimeConfig": {ANNOTATIONS_CAPABILITY: dict(annotations)}}, args


def check_pod(row: str, pod_ns: str) -> None:
    """An ADD that exits 0 without the seed's two interfaces must not be timed as a success."""
    found = kernel.addresses(pod_ns)
    eth0, net1 = (found.get(name) or [None] for name in ("eth0", "net1"))
    ok = eth0[0] is not None and ipaddress.ip_interface(eth0[0]) in FLANNEL_SUBNET and net1[0] is not None
    if ok and row == "fixed":
        ok = net1[0] == f"{FIXED_ANNOTATIONS['kube-ipam.ip']}/16"
    elif ok:
        ok = net1[0].endswith("/16") and DYNAMIC[0] <= ipaddress.ip_interface(net1[0]).ip <= DYNAMIC[1]
    if not ok:
        raise BenchError(f"native {row} ADD exited 0 but the pod has eth0 {eth0}, net1 {net1}")


class Native:
    """One native ADD or DEL through the multus-cni executable, as containerd runs it."""

    def __init__(self, topo: Topology, conf: dict, multus_cni: str, python_env: dict, api: KubeAPIServer) -> None:
        self.topo, self.conf, self.multus_cni, self.python_env, self.api = topo, conf, multus_cni, python_env, api

    def call(self, command: str, row: str, label: str, pod_ns: str, **extra_env: str) -> tuple[float, bytes]:
        if row == API_ROW:
            conf, args = pod_request({**self.conf, "kubeconfig": self.api.kubeconfig}, "dynamic", label)
        else:
            conf, args = pod_request(self.conf, row, label)
        env = {**self.python_env, **extra_env, "CNI_COMMAND": command, "CNI_CONTAINERID": f"{self.topo.tag}-{label}",
               "CNI_NETNS": f"/run/netns/{pod_ns}", "CNI_IFNAME": "eth0", "CNI_ARGS": args,
               "CNI_PATH": self.conf["binDir"]}
        ms, _, err = run(["ip", "netns", "exec", self.topo.node, self.multus_cni], json.dumps(conf).encode(), env,
                         what=f"native {row} {command}")
        return ms, err

    def cycle(self, row: str, label: str, **extra_env: str) -> tuple[float, float, list[bytes]]:
        """One fresh pod: ADD, check, DEL; returns (add ms, del ms, [ADD stderr, DEL stderr])."""
        pod_ns = self.topo.new_pod(label)
        if row == API_ROW:
            self.api.add_pod("default", f"web-{label}", uid=f"uid-{label}")
        try:
            add_ms, add_err = self.call("ADD", row, label, pod_ns, **extra_env)
            check_pod("dynamic" if row == API_ROW else row, pod_ns)
            if row == API_ROW and STATUS_ANNOTATION not in self.api.pod("default", f"web-{label}")["metadata"].get(
                    "annotations", {}):
                raise BenchError(f"api ADD exited 0 but web-{label} has no {STATUS_ANNOTATION}")
            del_ms, del_err = self.call("DEL", row, label, pod_ns, **extra_env)
            return add_ms, del_ms, [add_err, del_err]
        finally:
            self.topo.drop_pod(pod_ns)
            if row == API_ROW:
                self.api.delete_pod("default", f"web-{label}")


# ---------------------------------------------------------------- in process (a worker inside the node netns)


def worker(params: dict) -> dict:
    """Times entry.build + add (+ to_json) and entry.build + delete per request, one registry kept."""
    from multipy import entry
    from multipy.cni.env import Environment
    from multipy.cni.skel import Request
    from multipy.log import Log, Settings
    from multipy.plugins.registry import Registry

    base, version = params["conf"], params["conf"]["cniVersion"]
    registry = Registry(index_path=f"{base['cniDir']}/internal/entry-points.json")  # a daemon scans once
    samples: dict = {row: {"ADD": [], "DEL": [], "first": []} for row in NATIVE_ROWS}
    for i in range(params["runs"] + 1):
        for row in NATIVE_ROWS[i % 2:] + NATIVE_ROWS[:i % 2]:
            label, times = f"i{i}", []
            pod_ns = f"{params['tag']}-{row[0]}{label}"
            conf, args = pod_request(base, row, label)
            run(["ip", "netns", "add", pod_ns], what="ip netns add")
            try:
                for command in ("ADD", "DEL"):
                    env = Environment(command, f"{params['tag']}-{row[0]}{label}", f"/run/netns/{pod_ns}", "eth0",
                                      args, (base["binDir"],))
                    request = Request(env, json.dumps(conf).encode(), conf, version)
                    start = time.perf_counter()
                    handler = entry.build(request, Log(Settings()), registry=registry)
                    if command == "ADD":
                        handler.add(request).to_json(version)
                    else:
                        handler.delete(request)
                    times.append((time.perf_counter() - start) * 1000)
                    if command == "ADD":
                        check_pod(row, pod_ns)
            finally:
                run(["ip", "netns", "del", pod_ns], what="ip netns del")
            if i == 0:  # imports pyroute2, grpc and the plugins: uncounted
                samples[row]["first"] = times
            else:
                samples[row]["ADD"].append(times[0])
                samples[row]["DEL"].append(times[1])
    return samples


def in_process(topo: Topology, conf: dict, runs: int, python_env: dict) -> dict:
    params = {"conf": conf, "runs": runs, "tag": f"{topo.tag}w"}
    env = python_env
    try:
        _, out, _ = run(["ip", "netns", "exec", topo.node, sys.executable, os.path.abspath(__file__), "--worker",
                         json.dumps(params)], env=env, what="in-process worker")
        return json.loads(out)
    finally:
        # The worker makes and removes its pods' namespaces itself; one killed mid-cycle leaves a name behind.
        for name in os.listdir("/run/netns"):
            if name.startswith(f"{params['tag']}-"):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)


# ---------------------------------------------------------------- imports and leftovers


def import_split(stderr: bytes) -> dict[str, float]:
    """-X importtime of one multus-cni call, ms: interpreter start-up, multipy.entry, then each lazy import."""
    top = [(name, cum / 1000) for depth, name, _, cum in parse_importtime(stderr.decode()) if depth == 0]
    entry = next(i for i, (name, _) in enumerate(top) if name == "multipy.entry")
    return {"interpreter": sum(ms for _, ms in top[:entry]), "multipy.entry": top[entry][1], **dict(top[entry + 1:])}


def median_parts(runs: list[dict[str, float]]) -> dict[str, float]:
    return {name: median([parts.get(name, 0.0) for parts in runs]) for name in runs[0]}


def leftovers(where: str, etcd: EtcdCluster, tmp: str) -> list[str]:
    """What the cycles left behind: only database-1's unbound fixed address may stay, in etcd."""
    problems = []
    for key, value in run_in(where, etcd.keys, PREFIX).items():
        record = json.loads(value) if value.startswith("{") else {}
        if key.endswith("/ips/" + FIXED_ANNOTATIONS["kube-ipam.ip"]) and record.get("containerID") == "" \
                and record.get("pod") == f"default/{FIXED_POD}":
            continue
        problems.append(f"etcd still holds {key} = {value[:200]}")
    held = {"flannel": lambda n: True, "ipam-native/k8snet1": lambda n: n[0].isdigit(),
            "native-cache": lambda n: ":" in n}
    for directory, counts in held.items():
        path = f"{tmp}/{directory}"
        names = os.listdir(path) if os.path.isdir(path) else []
        problems += [f"{directory} still holds {name}" for name in sorted(names) if counts(name)]
    return problems


# ---------------------------------------------------------------- main


def bench(args, multus_cni: str, python_env: dict, tmp: str) -> dict:
    topo = Topology(f"mps{os.getpid()}")
    etcd = EtcdCluster()
    os.mkdir(f"{tmp}/kube")
    api = KubeAPIServer(directory=f"{tmp}/kube")
    try:
        topo.open()
        where = f"/run/netns/{topo.node}"
        run_in(where, etcd.start)  # listens on the node's loopback, where multus-cni runs
        run_in(where, api.start)
        native = Native(topo, seed_conf(args.cni_version, tmp, etcd.etcd_config()), multus_cni, python_env, api)
        go = add_del.Sides(topo, args.cni_version, tmp, multus_cni, python_env)

        def cycle(row: str, label: str) -> tuple[float, float]:
            if row in (*NATIVE_ROWS, API_ROW):
                return native.cycle(row, label)[:2]
            return add_del.cycle(go, row, label, check_links=True)[:2]

        rows = [*NATIVE_ROWS, API_ROW, *GO_ROWS]
        # Uncounted: creates docker0 and cni0, database-1's reservation, entry-point indexes and conf stamps.
        samples: dict = {"warmup": {row: cycle(row, f"warm-{row[:3]}") for row in rows}}
        samples.update({row: {"ADD": [], "DEL": []} for row in rows})
        samples["netns_exec"] = []
        for i in range(args.runs):
            for row in rows[i % len(rows):] + rows[:i % len(rows)]:  # rotated: drift spreads over every row
                add_ms, del_ms = cycle(row, f"{row[:3]}{i}")
                samples[row]["ADD"].append(add_ms)
                samples[row]["DEL"].append(del_ms)
            samples["netns_exec"].append(go.netns_exec())
        samples["in-process"] = in_process(topo, native.conf, args.runs, python_env)
        profiled = [native.cycle("dynamic", f"imp{i}", PYTHONPROFILEIMPORTTIME="1")[2] for i in range(IMPORT_RUNS)]
        samples["imports"] = {command: median_parts([import_split(err[k]) for err in profiled])
                              for k, command in enumerate(("ADD", "DEL"))}
        problems = leftovers(where, etcd, tmp)
        if problems:
            raise BenchError("left behind after every DEL:\n  " + "\n  ".join(problems))
        return samples
    finally:
        api.close()
        etcd.close()
        problems = topo.close()
        if problems:
            print("\n".join(problems), file=sys.stderr)


def report(samples: dict, args, out) -> None:
    def p(*a):
        print(*a, file=out)

    def row(label: str, s: dict) -> None:
        p(f"  {label:64}{median(s['ADD']):8.1f}{p95(s['ADD']):8.1f}{median(s['DEL']):8.1f}{p95(s['DEL']):8.1f}")

    bytecode = "cached (PYTHONPYCACHEPREFIX)" if args.bytecode_cache else "environment as-is" + (
        " (PYTHONDONTWRITEBYTECODE=1: project modules compiled every exec)" if os.environ.get("PYTHONDONTWRITEBYTECODE")
        else "")
    p(f"\nThe seed (eth0 master + net1) ADD/DEL through multus-cni, cniVersion {args.cni_version}, {args.runs} runs "
      f"per row, ms; python bytecode {bytecode}")
    p(f"  {'':64}{'ADD':>8}{'p95':>8}{'DEL':>8}{'p95':>8}")
    p("multus-cni, native: flannel (bridge docker0 + host-local) + macvlan/kube-ipam (etcd in the node)")
    row("web pod, dynamic net1 (no annotation)", samples["dynamic"])
    row(f"{FIXED_POD}, fixed net1 (annotations; new container ID per cycle)", samples["fixed"])
    row("web pod, dynamic net1, with the API: pod read, network-status, events", samples[API_ROW])
    p("the same, in process: entry.build per request in one interpreter (no start-up, no imports)")
    for name in NATIVE_ROWS:
        row(name, samples["in-process"][name])
    p("Go delegates: bridge cni0 + host-local, macvlan + host-local")
    row("through multus-cni (binaryDelegates)", samples["multipy"])
    row("invoked directly (2 execs per operation)", samples["direct"])
    e = samples["netns_exec"]
    p(f"  {'ip netns exec node true (in every row but in process)':64}{median(e):8.1f}{p95(e):8.1f}")

    for command, parts in samples["imports"].items():
        lazy = {name: ms for name, ms in parts.items() if name not in ("interpreter", "multipy.entry")}
        heavy = ", ".join(f"{name} {ms:.1f}" for name, ms in sorted(lazy.items(), key=lambda kv: -kv[1])[:5])
        p(f"  imports in one native {command} (-X importtime, median of {IMPORT_RUNS} untimed): {sum(parts.values()):.1f} = interpreter "
          f"{parts['interpreter']:.1f} + multipy.entry {parts['multipy.entry']:.1f} + lazy {sum(lazy.values()):.1f} "
          f"({heavy})")
    w, first = samples["warmup"], samples["in-process"]
    p("  first (uncounted) cycles, ADD/DEL: " + ", ".join(f"{r} {a:.1f}/{d:.1f}" for r, (a, d) in w.items())
      + "; in process " + ", ".join(f"{r} {first[r]['first'][0]:.1f}/{first[r]['first'][1]:.1f}" for r in NATIVE_ROWS))
    p("  native: one exec; flannel, bridge, host-local, macvlan and kube-ipam run in it (kube-ipam: a new etcd")
    p("    client and connection, 3 round trips); Go through multus-cni: one Python exec + 4 Go execs (bridge and")
    p("    macvlan, each exec'ing host-local); Go direct: the same 4 Go execs, no flannel and no etcd")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        json.dump(worker(json.loads(sys.argv[2])), sys.stdout)
        return 0
    parser = bench_parser(__doc__, "0.3.1")
    go = [f"{add_del.CNI_BIN}/{p}" for p in ("bridge", "macvlan", "host-local")]
    args = checked_args(parser, [*go, (ETCD_BIN, "install Debian's etcd-server, or set ETCD_BIN")])
    multus_cni = add_del.multus_cni_path(parser)
    with tempfile.TemporaryDirectory(prefix="multipy-bench-seed-") as tmp:
        write_subnet_env(f"{tmp}/subnet.env")
        os.mkdir(f"{tmp}/no-binaries")
        python_env = python_env_for(args, tmp)
        try:
            samples = bench(args, multus_cni, python_env, tmp)
        except (BenchError, EtcdStartError) as err:
            print(f"benchmark aborted: {err}", file=sys.stderr)
            return 1
    return publish(samples, args, report)


if __name__ == "__main__":
    sys.exit(main())
