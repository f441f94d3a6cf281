"""RunPodSandbox and StopPodSandbox+RemovePodSandbox latency through containerd's CRI plugin, per CNI setup.

    .venv/bin/python bench/runtime.py [--runs N] [--cni-version V] [--bytecode-cache] [--json]

Needs root, containerd, runc and gcc (make deps). A node namespace (veth uplink0/uplink0p) holds one
containerd per row (multipy.testing.containerd: own config, dirs and private mount namespace), so every
row has its own conf and nothing waits for containerd to reload one. Rows are interleaved, rotated each
round; one cycle is RunPodSandbox (timed), PodSandboxStatus and the pod's addresses (untimed checks),
then StopPodSandbox + RemovePodSandbox (timed together). Rows:

  floor       a plain Debian conflist: the Go bridge + host-local, eth0 only: containerd's own floor
  thin        multus-cni, every delegate native: the seed's topology with host-local on net1 (flannel
              master, bridge + host-local from a subnet.env, mtu 1400; macvlan on uplink0 + host-local)
  go          multus-cni with the same conf and the Go delegates (binaryDelegates bridge, host-local,
              macvlan; the native flannel hands its bridge conf to the Go bridge)
  thick       multus-shim (the stdlib file alone, run with python -IS) + `multipy daemon` in the node
              namespace, the thin row's conf; containerd's env names no thin fallback (MULTIPY_THIN),
              so a request that does not reach the daemon fails the bench. Left out (and said so) when
              this tree has no thick mode.

Each row has its own bridge, flannel subnet and net1 range. At the end no sandbox, record, lease, flannel
file or libcni cache entry may be left. Everything is removed in `finally` blocks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from add_del import UPLINK, UPLINK_PEER, BenchError, bench_parser, checked_args, median, p95, publish, python_env_for

from multipy.testing.containerd import GO_PLUGINS, Containerd, CRIError, Pod
from multipy.testing.flannel import write_subnet_env
from multipy.testing.runtime import unique

ROWS = ("floor", "thin", "go", "thick")
LABELS = {
    "floor": "Go bridge + host-local conflist (floor)",
    "thin": "multipy thin, native delegates",
    "go": "multipy thin, Go delegates",
    "thick": "multipy thick (shim + daemon), native",
}
THICK_TARGET = 1.3  # issue 14: RunPodSandbox with multipy thick <= 1.3x the floor's


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def thick_available() -> str | None:
    """None when this tree has thick mode (multipy.shim and multipy.daemon), else why not."""
    try:
        import multipy.daemon  # noqa: F401
        import multipy.shim  # noqa: F401
        from multipy.testing.daemon import DaemonProcess  # noqa: F401
    except ImportError as error:
        return f"no thick mode in this tree ({error})"
    return None


def lone_shim(directory: str) -> str:
    """multus-shim as a thick install lays it out: the stdlib-only file alone, run with `python -IS`."""
    import multipy.shim as shim

    path = os.path.join(directory, "multus-shim")
    with open(shim.__file__) as source, open(path, "w") as target:
        target.write(f"#!{sys.executable} -IS\n{source.read()}")
    os.chmod(path, 0o755)
    return path


def seed_like(args, tmp: str, row: str, index: int, kit: Containerd) -> dict:
    """The seed's topology with host-local on net1, its state under tmp/row."""
    subnet = write_subnet_env(f"{tmp}/{row}.subnet.env", FLANNEL_SUBNET=f"10.244.{index}.1/24", FLANNEL_NETWORK="10.244.0.0/16")
    master = {"name": "k8snet1", "type": "flannel", "masterplugin": True,
              "delegate": {"isDefaultGateway": True, "bridge": f"br-{row}", "mtu": 1400},
              "subnetFile": subnet, "dataDir": f"{tmp}/{row}/flannel", "ipam": {"dataDir": f"{tmp}/{row}/ipam"}}  # fmt: skip
    net1 = {"name": "k8snet2", "type": "macvlan", "master": UPLINK, "mode": "bridge",
            "ipam": {"type": "host-local", "subnet": "10.188.0.0/16", "rangeStart": f"10.188.{index}.1",
                     "rangeEnd": f"10.188.{index}.250", "dataDir": f"{tmp}/{row}/ipam"}}  # fmt: skip
    return {"cniVersion": args.cni_version, "name": "multus-demo", "type": "multus-cni",
            "cniDir": f"{tmp}/{row}/cache", "binDir": kit.cni_bin_dir, "logFile": f"{tmp}/{row}/multipy.log",
            "logLevel": "error", "delegates": [master, net1]}  # fmt: skip


class Row:
    def __init__(self, name: str, kit: Containerd, eth0_prefix: str, net1: bool):
        self.name, self.kit, self.eth0_prefix, self.net1 = name, kit, eth0_prefix, net1
        self.run_ms: list[float] = []
        self.stop_ms: list[float] = []

    def cycle(self, pod: str) -> None:
        kit = self.kit
        start = time.perf_counter()
        try:
            sandbox = kit.cri.run_pod_sandbox(pod, "default", unique("uid-"), cgroup_parent=kit.cgroup_parent)
        except CRIError as error:
            raise BenchError(f"{self.name}: RunPodSandbox {pod}: {error.message}") from None
        ran = time.perf_counter()
        handle = Pod(sandbox, pod, "default", "")
        kit.pods[sandbox] = handle
        kit.refresh(handle)
        inside = kit.addresses(handle)
        if not handle.ip.startswith(self.eth0_prefix) or inside.get("eth0") != [f"{handle.ip}/24"]:
            raise BenchError(f"{self.name}: {pod} has eth0 {inside.get('eth0')}, status says {handle.ip!r}")
        if self.net1 and not inside.get("net1"):
            raise BenchError(f"{self.name}: {pod} has no net1: {inside}")
        stop = time.perf_counter()
        try:
            kit.stop_pod(handle)
            kit.remove_pod(handle)
        except CRIError as error:
            raise BenchError(f"{self.name}: Stop/RemovePodSandbox {pod}: {error.message}") from None
        self.run_ms.append((ran - start) * 1000)
        self.stop_ms.append((time.perf_counter() - stop) * 1000)


def leftovers(rows: list[Row], tmp: str) -> list[str]:
    found = []
    for row in rows:
        if row.kit.pods:
            found.append(f"{row.name}: sandboxes {sorted(row.kit.pods)}")
        if row.kit.libcni_cache():
            found.append(f"{row.name}: libcni cache {row.kit.libcni_cache()}")
        if row.kit.netns_files():
            found.append(f"{row.name}: netns {row.kit.netns_files()}")
        base = f"{tmp}/{row.name}"
        for sub in ("cache", "flannel"):
            path = f"{base}/{sub}"
            names = [n for n in os.listdir(path) if n != "internal"] if os.path.isdir(path) else []
            if names:
                found.append(f"{row.name}: {sub} {names}")
        ipam = f"{base}/ipam"
        for network in os.listdir(ipam) if os.path.isdir(ipam) else []:
            leases = [n for n in os.listdir(f"{ipam}/{network}") if n[0].isdigit()]
            if leases:
                found.append(f"{row.name}: leases {network} {leases}")
    return found


def bench(args, tmp: str, python_env: dict) -> tuple[dict, str | None]:
    node = unique("bench-node-")
    kits: list[Containerd] = []
    daemon = None
    pending = thick_available()
    ip("netns", "add", node)
    try:
        ip("-n", node, "link", "set", "lo", "up")
        ip("-n", node, "link", "add", UPLINK, "type", "veth", "peer", "name", UPLINK_PEER)
        ip("-n", node, "link", "set", UPLINK, "up")
        ip("-n", node, "link", "set", UPLINK_PEER, "up")
        env = {k: v for k, v in python_env.items() if k.startswith("PYTHON")}
        rows: list[Row] = []
        for index, name in enumerate(ROWS, start=1):
            if name == "thick" and pending:
                continue
            kit = Containerd(netns=node, env={**env, **({"MULTIPY_THIN": f"{tmp}/no-thin-fallback"} if name == "thick" else {})})
            kits.append(kit)
            kit.start()
            kit.install_plugins(GO_PLUGINS, ["loopback"])
            if name == "floor":
                kit.install_plugins(GO_PLUGINS, ["bridge", "host-local"])
                kit.write_conf({"cniVersion": args.cni_version, "name": "floor", "plugins": [
                    {"type": "bridge", "bridge": "br-floor", "isGateway": True,
                     "ipam": {"type": "host-local", "subnet": f"10.244.{index}.0/24", "dataDir": f"{tmp}/floor/ipam"}}]})  # fmt: skip
                rows.append(Row(name, kit, f"10.244.{index}.", net1=False))
                continue
            conf = seed_like(args, tmp, name, index, kit)
            if name == "go":
                kit.install_plugins(GO_PLUGINS, ["bridge", "host-local", "macvlan"])
                conf["binaryDelegates"] = ["bridge", "host-local", "macvlan"]
            if name in ("thin", "go"):
                kit.install_multipy()
            else:  # thick
                from multipy.testing.daemon import DaemonProcess

                os.makedirs(f"{tmp}/daemon")
                daemon = DaemonProcess(f"{tmp}/daemon", env=python_env, log_level="error", host_netns=node)
                daemon.start(timeout=60)
                kit.install_executable(lone_shim(tmp), "multus-shim")
                conf = {**conf, "type": "multus-shim", "daemonSocketDir": daemon.socket_dir}
            kit.write_conf(conf)
            rows.append(Row(name, kit, f"10.244.{index}.", net1=True))
        for row in rows:  # warm-up, untimed: page cache, first-time conf validation, the daemon's imports
            row.cycle("warm-up")
            row.run_ms.clear()
            row.stop_ms.clear()
        for round_ in range(args.runs):
            shift = round_ % len(rows)
            for row in rows[shift:] + rows[:shift]:
                row.cycle(f"pod-{round_}")
        left = leftovers(rows, tmp)
        if left:
            raise BenchError("left behind: " + "; ".join(left))
        return {row.name: {"run": row.run_ms, "stop_remove": row.stop_ms} for row in rows}, pending
    finally:
        for kit in kits:
            kit.close()
        if daemon is not None:
            daemon.stop()
        subprocess.run(["ip", "netns", "del", node], capture_output=True)


def report(samples: dict, args, out) -> None:
    data, pending = samples["rows"], samples.get("thick_pending")
    floor_run, floor_stop = median(data["floor"]["run"]), median(data["floor"]["stop_remove"])
    print(f"containerd {samples['containerd']}, {args.runs} interleaved cycles per row, cniVersion {args.cni_version}", file=out)
    print(f"{'row':42} {'Run p50':>9} {'Run p95':>9} {'x floor':>8} {'Stop+Rm p50':>12} {'Stop+Rm p95':>12} {'x floor':>8}", file=out)
    for name in ROWS:
        if name not in data:
            print(f"{LABELS[name]:42} {'pending: ' + (pending or 'not run')}", file=out)
            continue
        run, stop = data[name]["run"], data[name]["stop_remove"]
        print(f"{LABELS[name]:42} {median(run):8.0f}ms {p95(run):8.0f}ms {median(run) / floor_run:7.2f}x "
              f"{median(stop):11.0f}ms {p95(stop):11.0f}ms {median(stop) / floor_stop:7.2f}x", file=out)  # fmt: skip
    if "thick" in data:
        ratio = median(data["thick"]["run"]) / floor_run
        verdict = "meets" if ratio <= THICK_TARGET else "misses"
        print(f"thick RunPodSandbox {ratio:.2f}x the floor: {verdict} the {THICK_TARGET}x target", file=out)


def main() -> int:
    parser = bench_parser(__doc__, "0.4.0", min_runs=5)
    parser.set_defaults(runs=20)
    args = checked_args(parser, ["/usr/bin/containerd", "/usr/sbin/runc", f"{GO_PLUGINS}/bridge", f"{GO_PLUGINS}/loopback"])
    with tempfile.TemporaryDirectory(prefix="multipy-bench-runtime-") as tmp:
        try:
            rows, pending = bench(args, tmp, python_env_for(args, tmp))
        except BenchError as error:
            print(f"benchmark aborted: {error}", file=sys.stderr)
            return 1
    version = subprocess.run(["containerd", "--version"], capture_output=True, text=True).stdout.split()
    samples = {"rows": rows, "thick_pending": pending, "containerd": version[2] if len(version) > 2 else "?"}
    return publish(samples, args, report)


if __name__ == "__main__":
    sys.exit(main())

