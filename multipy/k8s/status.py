"""The pod's `k8s.v1.cni.cncf.io/network-status` annotation and AddedInterface event text, as
Multus writes them (the network-attachment-definition-client's NetworkStatus type).

Input is each delegate's ADD result as JSON in its own cniVersion; `multipy.cni.result` reads
every version, so an entry looks the same whatever version a delegate speaks. An entry is
decoration written after the pod is wired: it never raises.
"""

from __future__ import annotations

import json

from multipy.cni.result import Result, dns_wire


def entry(name: str, ifname: str, result_wire: dict, default: bool, mtu: int | None = None) -> dict:
    """One network's status; keys in Go's field order, empty optional ones left out (omitempty)."""
    try:
        result = Result.from_json(result_wire)
    except Exception:  # whatever a delegate printed, the pod still gets its minimal entry
        return {"name": name, "interface": ifname, "dns": {}}
    out: dict = {"name": name, "interface": ifname}
    # The pod's interface is the one with a sandbox; host-side veths and bridges have none.
    sandboxed = [i for i in result.interfaces if i.sandbox]
    pod_side = sandboxed[-1] if sandboxed else None
    if pod_side is not None and pod_side.name:
        out["interface"] = pod_side.name
    ips = [str(ipc.address.ip) for ipc in result.ips]
    if ips:
        out["ips"] = ips
    if pod_side is not None and pod_side.mac:
        out["mac"] = pod_side.mac
    # Only a 1.x result can carry the interface's mtu; otherwise the caller read it from the link.
    chosen_mtu = (pod_side.mtu if pod_side is not None else 0) or mtu
    if chosen_mtu:
        out["mtu"] = chosen_mtu
    if default:
        out["default"] = True
    out["dns"] = dns_wire(result.dns)
    gateways = _default_gateways(result)
    if gateways:
        out["gateway"] = gateways
    return out


def annotation(entries: list[dict]) -> str:
    """The annotation's value: Multus marshals the list indented by four spaces."""
    return json.dumps(entries, indent=4)


def added_interface_message(ifname: str, result_wire: dict, name: str) -> str:
    """Multus's AddedInterface event text, e.g. "Add eth0 [10.244.1.2/24] from k8snet1".

    Multus formats the CIDR list with Go's %v, which separates items with a space:
    "Add eth0 [10.244.1.2/24 fd00::2/64] from k8snet1"."""
    try:
        cidrs = [str(ipc.address) for ipc in Result.from_json(result_wire).ips]
    except Exception:  # the event must not fail an ADD that succeeded
        cidrs = []
    text = f"Add {ifname} [{' '.join(cidrs)}]"
    return f"{text} from {name}" if name else text


def _default_gateways(result: Result) -> list[str]:
    # Multus prints route.GW, which is "<nil>" for a default route without one (a device
    # route); the gateway the IPAM gave the address of that family is what the pod uses then.
    gateways: list[str] = []
    for route in result.routes:
        if route.dst.prefixlen != 0:
            continue
        gw = route.gw
        if gw is None:
            gw = next(
                (i.gateway for i in result.ips if i.gateway is not None and i.gateway.version == route.dst.version),
                None,
            )
        if gw is not None and str(gw) not in gateways:
            gateways.append(str(gw))
    return gateways
