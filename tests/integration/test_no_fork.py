"""A native seed ADD and DEL create no process: traced with strace through the `multus-cni` executable.

The seed's pod as containerd wires it: eth0 from flannel (bridge + host-local), net1 from macvlan
with kube-ipam on a real etcd (annotations through the runtime's capability, so no API call).
Every delegate is multipy's own. Threads are fine (grpc runs some, netns.run_in one per visit to
the pod); a process is not: no fork, no vfork, no clone without CLONE_THREAD, and no execve but
multus-cni's own. Only masquerading may run a program: iptables, with whatever it runs itself.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from dataclasses import dataclass

import pytest

from multipy.testing import kernel
from multipy.testing.runtime import executable, invoke
from multipy.testing.topology import SEED_KUBE_IPAM

pytestmark = pytest.mark.netns

_SYSCALLS = "clone,clone3,fork,vfork,execve"
_CALL = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
_RETURN = re.compile(r"\)\s+=\s+(-?\d+)")
_EXECVE_PATH = re.compile(r'^"([^"]*)"')
_IPTABLES = re.compile(r"^ip6?tables(-\w+)?$")


@dataclass
class Call:
    pid: int
    name: str  # clone, clone3, fork, vfork or execve
    args: str  # as strace printed them, up to the result
    result: int | None = None  # None until strace shows it (a call cut by another thread's resumes later)


def calls(text: str) -> list[Call]:
    """Every traced call with its result; an `<unfinished ...>` call is completed by its `<... resumed>` line."""
    found: list[Call] = []
    open_calls: dict[int, Call] = {}
    for line in text.splitlines():
        match = _CALL.match(line)
        if not match:
            continue  # "+++ exited ..." and "--- SIG... ---" lines
        pid, resumed, started, rest = int(match[1]), match[2], match[3], match[4]
        call = open_calls.pop(pid) if resumed and pid in open_calls else None
        if started:
            call = Call(pid, started, rest)
            found.append(call)
        elif call is not None:
            call.args += rest
        if call is None:
            continue
        result = _RETURN.search(rest)
        if result:
            call.result = int(result[1])
        else:
            open_calls[pid] = call
    return found


@dataclass
class Process:
    parent: int | None  # the process that made it
    program: str = ""  # what it exec'd; "" while it runs its parent's image


@dataclass
class Trace:
    """The processes a traced run made, and which thread belongs to which of them."""

    root: int
    processes: dict[int, Process]
    owner: dict[int, int]  # thread id (a process's own id too) -> its process
    execs: list[tuple[int, str, int | None]]  # (thread, path, result), in order

    def program_line(self, pid: int) -> list[str]:
        """The programs from process `pid` up to the root: which program made which process."""
        line: list[str] = []
        current: int | None = pid
        while current is not None:
            line.append(self.processes[current].program)
            current = self.processes[current].parent
        return line


def parse(text: str) -> Trace:
    traced = calls(text)
    assert traced, "strace recorded nothing"
    root = traced[0].pid
    processes, owner = {root: Process(None)}, {root: root}
    # Children are placed first: a child's own lines may come before its parent's clone returns.
    for call in traced:
        if call.name == "execve" or not call.result or call.result < 0:
            continue
        parent = owner.setdefault(call.pid, call.pid)
        if call.name in ("clone", "clone3") and "CLONE_THREAD" in call.args:
            owner[call.result] = parent
        else:
            processes[call.result] = Process(parent)
            owner[call.result] = call.result
    execs = []
    for call in (c for c in traced if c.name == "execve"):
        path = _EXECVE_PATH.match(call.args)
        execs.append((call.pid, path[1] if path else "?", call.result))
        process = processes.get(owner.get(call.pid, call.pid))
        if process is not None and call.result == 0:
            process.program = os.path.basename(path[1] if path else "?")
    return Trace(root, processes, owner, execs)


def _seed_conf(tmp_path, node, cluster, masquerade: bool, subnet_file: str) -> dict:
    flannel = {
        "name": "k8snet1", "type": "flannel", "masterplugin": True,
        "delegate": {"isDefaultGateway": True, "bridge": "docker0", "mtu": 1400, "ipMasq": masquerade},
        "subnetFile": subnet_file, "dataDir": str(tmp_path / "flannel"), "ipam": {"dataDir": str(tmp_path / "ipam")},
    }  # fmt: skip
    macvlan = {
        "name": "k8snet2",
        "type": "macvlan",
        "master": node.uplink,
        "mode": "bridge",
        "capabilities": {"io.kubernetes.cri.pod-annotations": True},
        "ipam": {
            **copy.deepcopy(SEED_KUBE_IPAM),
            "kubeConfig": str(tmp_path / "no-such-kubeconfig"),
            "etcdConfig": cluster.etcd.etcd_config(),
        },
    }
    return {
        "cniVersion": "0.3.1",
        "name": "multus-demo",
        "type": "multus-cni",
        "cniDir": str(tmp_path / "cache"),
        "binDir": str(tmp_path / "no-binaries"),  # no plugin binary anywhere: every delegate is native
        "logFile": str(tmp_path / "multipy.log"),
        "logLevel": "debug",
        "delegates": [flannel, macvlan],
        "runtimeConfig": {
            "io.kubernetes.cri.pod-annotations": {
                "kube-ipam.ip": "10.188.0.218", "kube-ipam.netmask": "255.255.0.0", "kube-ipam.gateway": "10.188.0.1",
            },
        },  # fmt: skip
    }


@pytest.mark.parametrize("masquerade", [False, True], ids=["no-ipmasq", "ipmasq"])
def test_native_seed_add_and_del_create_no_process(masquerade, cluster, node, netns, tmp_path,
                                                    subnet_env):  # fmt: skip
    strace = shutil.which("strace")
    assert strace, "strace is not installed (make test installs it with the other Debian packages)"
    (tmp_path / "no-binaries").mkdir()
    conf = _seed_conf(tmp_path, node, cluster, masquerade, subnet_env(FLANNEL_SUBNET="10.244.1.1/24"))
    pod = netns("pod")
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=database-1;K8S_POD_INFRA_CONTAINER_ID=c1"
    multus = executable()

    for command in ("ADD", "DEL"):
        out = tmp_path / f"{command}.strace"
        traced = [strace, "-f", "-e", f"trace={_SYSCALLS}", "-o", str(out), multus]
        outcome = invoke(traced, command, conf, container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0",
                         cni_args=args, cni_path=str(tmp_path / "no-binaries"), host_netns=node.name)  # fmt: skip
        assert outcome.ok, outcome.stdout + outcome.stderr
        if command == "ADD":
            links = kernel.links(pod)
            assert links["net1"]["linkinfo"]["info_kind"] == "macvlan" and links["eth0"]["mtu"] == 1400
            assert kernel.addresses(pod)["net1"] == ["10.188.0.218/16"]
        else:
            assert set(kernel.links(pod)) == {"lo"}

        trace = parse(out.read_text())
        root_exec = [path for pid, path, result in trace.execs if pid == trace.root and result == 0]
        assert root_exec == [multus], f"{command}: multus-cni itself is exec'd once: {root_exec}"
        spawned = {pid: trace.program_line(pid) for pid in trace.processes if pid != trace.root}
        if not masquerade:
            assert spawned == {}, f"{command} created processes: {spawned}"
            assert [path for _, path, _ in trace.execs] == [multus], f"{command} tried to run programs"
            continue
        # Masquerading runs iptables; every process is iptables, or made by an iptables.
        for pid, line in spawned.items():
            assert any(_IPTABLES.match(program) for program in line[:-1]), (
                f"{command}: process {pid} is not iptables nor one of its children: {line}"
            )
        if command == "ADD":
            assert spawned, "ADD with ipMasq ran no iptables: the test no longer sees processes"
