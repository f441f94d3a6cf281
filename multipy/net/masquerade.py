"""Per-container masquerading in the nat table, named and commented exactly as the reference does it.

containernetworking/plugins pkg/ip (iptables flavour) gives every (network, container)
a chain `CNI-<first 24 hex of sha512(network + containerID)>`, commented
`name: "<network>" id: "<containerID>"`, holding ACCEPT for the pod's subnet and
MASQUERADE for everything but multicast, and jumps to it from POSTROUTING for
the pod's address. Same names, same rules, so a node can move between the Go
bridge and ours, and DEL of either removes what the other made.

iptables is run as a program (as go-iptables does), found on PATH; iptables-nft
and iptables-legacy both work. Teardown goes by the chain's name, so it needs
neither the pod's addresses nor its namespace: a DEL after the pod namespace is
gone still removes the rules (the reference leaks them then).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shlex
import shutil
import subprocess

from multipy.cni.errors import INTERNAL, CNIError

_CHAIN_PREFIX = "CNI-"
_CHAIN_LENGTH = 28  # iptables allows 28 characters; the reference fills them all
_PROGRAM = {4: "iptables", 6: "ip6tables"}
_MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}

Address = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def chain_name(network: str, container_id: str) -> str:
    digest = hashlib.sha512((network + container_id).encode()).hexdigest()
    return (_CHAIN_PREFIX + digest)[:_CHAIN_LENGTH]


def comment(network: str, container_id: str) -> str:
    # Go's %q; network names and container IDs are plain ASCII, where it equals JSON quoting.
    return f"name: {json.dumps(network, ensure_ascii=False)} id: {json.dumps(container_id, ensure_ascii=False)}"


def _locate(version: int) -> str:
    program = _PROGRAM[version]
    path = shutil.which(program)
    if path is None:
        raise CNIError(INTERNAL, f'failed to locate iptables: exec: "{program}": executable file not found in $PATH')
    return path


def _run(program: str, *args: str, allowed: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    argv = [program, "--wait", "-t", "nat", *args]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode not in allowed:
        raise CNIError(
            INTERNAL, f"running [{shlex.join(argv)}]: exit status {proc.returncode}: {proc.stderr.strip()}"
        )
    return proc


def _rules(program: str) -> list[list[str]]:
    """The nat table as `iptables -S` prints it, each line split into its arguments."""
    return [shlex.split(line) for line in _run(program, "-S").stdout.splitlines() if line.strip()]


def setup(address: Address, network: str, container_id: str) -> None:
    """Masquerade traffic from `address` leaving its subnet (reference SetupIPMasq, idempotent)."""
    program = _locate(address.version)
    chain = chain_name(network, container_id)
    note = comment(network, container_id)
    created = ["-N", chain] not in [rule[:2] for rule in _rules(program)]
    if created:
        _run(program, "-N", chain)
    wanted = (
        (chain, ["-d", str(address), "-j", "ACCEPT"]),
        (chain, ["!", "-d", _MULTICAST[address.version], "-j", "MASQUERADE"]),
        ("POSTROUTING", ["-s", str(address.ip), "-j", chain]),
    )
    for target, spec in wanted:
        rule = [*spec, "-m", "comment", "--comment", note]
        # A chain made just now is empty; otherwise append only what is missing (go-iptables AppendUnique).
        if (target != chain or not created) and _run(program, "-C", target, *rule, allowed=(0, 1)).returncode == 0:
            continue
        _run(program, "-A", target, *rule)


def teardown(network: str, container_id: str, versions: tuple[int, ...] = (4, 6)) -> None:
    """Remove the container's chain and every POSTROUTING jump to it; what is already gone is fine.

    Without the iptables program for a family there is nothing this plugin can have made there.
    """
    chain = chain_name(network, container_id)
    for version in versions:
        program = shutil.which(_PROGRAM[version])
        if program is None:
            continue
        rules = _rules(program)
        for rule in rules:
            if rule[:2] == ["-A", "POSTROUTING"] and _jumps_to(rule, chain):
                _run(program, "-D", *rule[1:], allowed=(0, 1))
        if ["-N", chain] in [rule[:2] for rule in rules]:
            _run(program, "-F", chain, allowed=(0, 1))
            _run(program, "-X", chain, allowed=(0, 1))


def _jumps_to(rule: list[str], chain: str) -> bool:
    return any(rule[i] in ("-j", "--jump") and rule[i + 1] == chain for i in range(len(rule) - 1))
