"""flanneld's subnet.env: the node's pod subnet, the cluster network, MTU and masquerading.

flanneld writes it (atomically) once it has a lease; until then a node has no pod
network, which is why a missing or incomplete file is "try again later" (code 11),
the usual state for the first pods on a booting node. Parsing follows the flannel
CNI plugin (flannel-io/cni-plugin flannel.go loadFlannelSubnetEnv): KEY=VALUE lines
split at the first `=`, unknown keys ignored, the subnets reduced to their network
(10.244.3.1/24 is the node's 10.244.3.0/24), the networks comma lists, the MTU an
unsigned integer and IPMASQ true only when it says `true`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from multipy.cni.errors import INVALID_NETWORK_CONFIG, IO_FAILURE, TRY_AGAIN_LATER, CNIError
from multipy.files import MIB, read_regular

DEFAULT_PATH = "/run/flannel/subnet.env"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class SubnetEnv:
    networks: tuple[Network, ...] = ()  # FLANNEL_NETWORK
    subnet: Network | None = None  # FLANNEL_SUBNET
    ipv6_networks: tuple[Network, ...] = ()  # FLANNEL_IPV6_NETWORK
    ipv6_subnet: Network | None = None  # FLANNEL_IPV6_SUBNET
    mtu: int | None = None  # FLANNEL_MTU
    ipmasq: bool | None = None  # FLANNEL_IPMASQ
    path: str = field(default=DEFAULT_PATH, compare=False)

    def missing(self) -> list[str]:
        """The keys still needed, as the flannel plugin names them."""
        found = []
        if not self.networks and not self.ipv6_networks:
            found += ["FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK"]
        if self.subnet is None and self.ipv6_subnet is None:
            found += ["FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET"]
        if self.mtu is None:
            found.append("FLANNEL_MTU")
        if self.ipmasq is None:
            found.append("FLANNEL_IPMASQ")
        return found


def _not_ready(detail: str) -> CNIError:
    return CNIError(TRY_AGAIN_LATER, f"flannel is not ready yet: failed to load flannel 'subnet.env' file: {detail}")


def _bad_value(path: str, key: str, value: str, problem: str) -> CNIError:
    return CNIError(INVALID_NETWORK_CONFIG, f"{path}: {key}={value!r}: {problem}")


def _network(path: str, key: str, value: str, version: int) -> Network:
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise _bad_value(path, key, value, "not a CIDR") from None
    if network.version != version or "/" not in value:
        raise _bad_value(path, key, value, f"not an IPv{version} CIDR")
    return network


def _networks(path: str, key: str, value: str, version: int) -> tuple[Network, ...]:
    return tuple(_network(path, key, part, version) for part in value.split(",") if part.strip())


def _mtu(path: str, value: str) -> int:
    text = value.strip()
    if not text.isascii() or not text.isdigit() or int(text) >= 2**32:
        raise _bad_value(path, "FLANNEL_MTU", value, "not an unsigned integer")
    return int(text)


def parse(text: str, path: str = DEFAULT_PATH) -> SubnetEnv:
    """The file's values; incomplete is fine here (see `missing`), malformed is code 7 naming key and value."""
    values: dict = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "FLANNEL_NETWORK":
            values["networks"] = _networks(path, key, value, 4)
        elif key == "FLANNEL_IPV6_NETWORK":
            values["ipv6_networks"] = _networks(path, key, value, 6)
        elif key == "FLANNEL_SUBNET":
            values["subnet"] = _network(path, key, value, 4)
        elif key == "FLANNEL_IPV6_SUBNET":
            values["ipv6_subnet"] = _network(path, key, value, 6)
        elif key == "FLANNEL_MTU":
            values["mtu"] = _mtu(path, value)
        elif key == "FLANNEL_IPMASQ":
            values["ipmasq"] = value.strip() == "true"
    return SubnetEnv(**values, path=path)


def load(path: str = DEFAULT_PATH) -> SubnetEnv:
    """The complete subnet.env at `path`, or code 11 saying flannel is not ready yet and what is missing."""
    try:
        # Bounded, regular files only (a FIFO or /dev/zero is refused, not read forever); the operator's
        # path may be a symlink.
        text = read_regular(path, MIB, follow_symlinks=True).decode("utf-8", "replace")
    except FileNotFoundError:
        raise _not_ready(f"open {path}: no such file or directory") from None
    except (OSError, ValueError) as exc:  # there, but unreadable: waiting will not help
        reason = getattr(exc, "strerror", None) or exc
        raise CNIError(IO_FAILURE, f"failed to load flannel 'subnet.env' file: open {path}: {reason}") from None
    env = parse(text, path)
    missing = env.missing()
    if missing:
        raise _not_ready(f"{path} is missing {', '.join(missing)}")
    return env
