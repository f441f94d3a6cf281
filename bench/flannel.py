"""ADD/DEL latency of the native flannel master versus the Go plugins it replaces, on the same conf.

    .venv/bin/python bench/flannel.py [--runs N] [--cni-version V] [--bytecode-cache] [--json]

Needs root. A "node" netns and, per cycle and side, a fresh "pod" netns; a subnet.env
in a temp dir stands in for flanneld. The conf is the seed's master delegate
(`"type": "flannel"`, delegate isDefaultGateway, bridge docker0, mtu 1400). Sides:

  native      `python -m multipy.plugins.standalone flannel` under `ip netns exec <node>`:
              native flannel -> native bridge -> native host-local, one process
  in-process  the same three plugins called in an already running Python (what a daemon
              would pay): a worker under `ip netns exec <node>` times building the request's
              handler and its add/delete, with one plugin registry kept across requests
  go          /usr/lib/cni/bridge (which execs /usr/lib/cni/host-local) under
              `ip netns exec <node>`, with exactly the conf flannel builds for its delegate
              (Debian has no flannel binary; flannel itself adds one exec on top of this)

Each side has its own host-local dataDir. `ip netns exec <node> true` is measured as a row
of its own. Everything created is removed in `finally` blocks; docker0 and the veths live
in the node and pod namespaces and go with them. `--json` prints raw samples on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from add_del import (
    CNI_BIN,
    BenchError,
    Topology,
    bench_parser,
    checked_args,
    clean_env,
    median,
    p95,
    publish,
    python_env_for,
    run,
)

from delegates import flannel, flannel_env
from multipy.testing.flannel import write_subnet_env

MASTER = {"name": "k8snet1", "type": "flannel", "delegate": {"isDefaultGateway": True, "bridge": "docker0",
                                                             "mtu": 1400}}


def flannel_conf(cni_version: str, tmp: str) -> dict:
    return {**MASTER, "cniVersion": cni_version, "subnetFile": f"{tmp}/subnet.env",
            "dataDir": f"{tmp}/flannel", "ipam": {"dataDir": f"{tmp}/ipam-native"}}


def go_conf(cni_version: str, tmp: str) -> dict:
    """The conf the flannel plugin hands its bridge delegate, pointed at the Go side's own dataDir."""
    conf = flannel.delegate_conf(flannel.parse(flannel_conf(cni_version, tmp)),
                                 flannel_env.load(f"{tmp}/subnet.env"))
    conf["ipam"]["dataDir"] = f"{tmp}/ipam-go"
    return conf


class Sides:
    def __init__(self, topo: Topology, cni_version: str, tmp: str, python_env: dict) -> None:
        self.topo = topo
        self.cni_version = cni_version
        # The entry-point index a multus-cni install keeps in its cniDir; without it every exec rescans.
        self.python_env = {**python_env, "MULTIPY_ENTRY_POINTS_INDEX": f"{tmp}/entry-points.json"}
        self.stdin = {"native": json.dumps(flannel_conf(cni_version, tmp)).encode(),
                      "go": json.dumps(go_conf(cni_version, tmp)).encode()}
        self.argv = {"native": [sys.executable, "-m", "multipy.plugins.standalone", "flannel"],
                     "go": [f"{CNI_BIN}/bridge"]}
        self.prev: dict[str, bytes] = {}

    def call(self, side: str, command: str, cid: str, pod: str) -> float:
        env = {**(self.python_env if side == "native" else clean_env()), "CNI_COMMAND": command,
               "CNI_CONTAINERID": cid, "CNI_NETNS": f"/run/netns/{pod}", "CNI_IFNAME": "eth0", "CNI_PATH": CNI_BIN}
        stdin = self.stdin[side]
        if command == "DEL" and self.cni_version not in ("0.3.0", "0.3.1"):
            stdin = json.dumps({**json.loads(stdin), "prevResult": json.loads(self.prev.pop(side))}).encode()
        ms, out, _ = run(["ip", "netns", "exec", self.topo.node, *self.argv[side]], stdin, env,
                         what=f"{side} {command}")
        if command == "ADD":
            self.prev[side] = out
        return ms

    def cycle(self, side: str, label: str) -> tuple[float, float]:
        pod = self.topo.new_pod(label)
        try:
            cid = f"{self.topo.tag}-{label}"
            add_ms = self.call(side, "ADD", cid, pod)
            return add_ms, self.call(side, "DEL", cid, pod)
        finally:
            self.topo.drop_pod(pod)


# ---------------------------------------------------------------- in-process worker (runs inside the node netns)


def worker(params: dict) -> dict:
    """Time Handler.add/delete of the standalone flannel plugin in this process, one fresh pod per cycle."""
    from multipy.cni.env import Environment
    from multipy.cni.skel import Request
    from multipy.log import Log, Settings
    from multipy.plugins import standalone
    from multipy.plugins.registry import Registry

    conf = params["conf"]
    make = standalone.build("flannel", registry=Registry())  # kept, as a daemon keeps it: scanned once
    samples: dict = {"ADD": [], "DEL": [], "first": []}
    for i in range(params["runs"] + 1):
        name = f"{params['tag']}-i{i}"
        run(["ip", "netns", "add", name], what="ip netns add")
        try:
            times = []
            for command in ("ADD", "DEL"):
                env = Environment(command, name, f"/run/netns/{name}", "eth0", "", (CNI_BIN,))
                request = Request(env, json.dumps(conf).encode(), conf, conf["cniVersion"])
                start = time.perf_counter()
                handler = make(request, Log(Settings()))
                (handler.add if command == "ADD" else handler.delete)(request)
                times.append((time.perf_counter() - start) * 1000)
        finally:
            run(["ip", "netns", "del", name], what="ip netns del")
        if i == 0:
            samples["first"] = times  # imports pyroute2 and the plugins: uncounted
        else:
            samples["ADD"].append(times[0])
            samples["DEL"].append(times[1])
    return samples


def in_process(topo: Topology, runs: int, cni_version: str, tmp: str, python_env: dict) -> dict:
    params = {"conf": flannel_conf(cni_version, tmp), "runs": runs, "tag": topo.tag}
    _, out, _ = run(["ip", "netns", "exec", topo.node, sys.executable, os.path.abspath(__file__), "--worker",
                     json.dumps(params)], env=python_env, what="in-process worker")
    return json.loads(out)


# ---------------------------------------------------------------- main


def bench(runs: int, cni_version: str, python_env: dict, tmp: str) -> dict:
    topo = Topology(f"mpf{os.getpid()}")
    try:
        topo.open()
        sides = Sides(topo, cni_version, tmp, python_env)
        samples: dict = {side: {"ADD": [], "DEL": []} for side in ("native", "go")}
        samples["warmup"] = {side: sides.cycle(side, f"warm-{side}") for side in ("native", "go")}
        samples["netns_exec"] = []
        for i in range(runs):
            for side in (("native", "go") if i % 2 == 0 else ("go", "native")):
                add_ms, del_ms = sides.cycle(side, f"{side[0]}{i}")
                samples[side]["ADD"].append(add_ms)
                samples[side]["DEL"].append(del_ms)
            samples["netns_exec"].append(run(["ip", "netns", "exec", topo.node, "true"], env=clean_env())[0])
        samples["in-process"] = in_process(topo, runs, cni_version, tmp, python_env)
        return samples
    finally:
        problems = topo.close()
        if problems:
            print("\n".join(problems), file=sys.stderr)


def report(samples: dict, args, out) -> None:
    def p(*a):
        print(*a, file=out)

    p(f"\nflannel master (bridge docker0, isDefaultGateway, mtu 1400) ADD/DEL, cniVersion {args.cni_version}, "
      f"{args.runs} runs per side, ms (median / p95)")
    p(f"{'':44}{'ADD':>9}{'p95':>9}{'DEL':>9}{'p95':>9}")
    rows = (("multipy flannel, own process (native all)", samples["native"]),
            ("multipy flannel, in-process (no startup)", samples["in-process"]),
            ("Go bridge + Go host-local, same conf", samples["go"]))
    for label, s in rows:
        p(f"{label:44}{median(s['ADD']):9.1f}{p95(s['ADD']):9.1f}{median(s['DEL']):9.1f}{p95(s['DEL']):9.1f}")
    e = samples["netns_exec"]
    p(f"{'ip netns exec node true (in every row but in-process)':44}{median(e):9.1f}{p95(e):9.1f}")
    first = samples["in-process"]["first"]
    w = samples["warmup"]
    p(f"  first (uncounted) cycles, ADD/DEL: native {w['native'][0]:.1f}/{w['native'][1]:.1f}, "
      f"go {w['go'][0]:.1f}/{w['go'][1]:.1f}, in-process {first[0]:.1f}/{first[1]:.1f} (creates docker0; imports)")
    p("  the Go row has no flannel exec: the real flannel binary would add its own start-up on top")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        json.dump(worker(json.loads(sys.argv[2])), sys.stdout)
        return 0
    args = checked_args(bench_parser(__doc__, "1.0.0"), [f"{CNI_BIN}/{p}" for p in ("bridge", "host-local")])
    with tempfile.TemporaryDirectory(prefix="multipy-bench-flannel-") as tmp:
        write_subnet_env(f"{tmp}/subnet.env")
        python_env = python_env_for(args, tmp)
        try:
            samples = bench(args.runs, args.cni_version, python_env, tmp)
        except BenchError as err:
            print(f"benchmark aborted: {err}", file=sys.stderr)
            return 1
    return publish(samples, args, report)


if __name__ == "__main__":
    sys.exit(main())
