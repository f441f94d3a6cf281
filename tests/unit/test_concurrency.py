"""One process, many requests at once: 50 ADD/DEL pairs on threads through ONE Registry and ONE
Services, as a daemon would serve them, with the real entry wiring and the real native host-local
(on a temporary dataDir) under a main plugin that only runs its IPAM, so no root is needed."""

from __future__ import annotations

import io
import json
import os
import threading

from multipy import entry
from multipy.cni import skel
from multipy.cni.result import Interface
from multipy.cni.version import SUPPORTED_VERSIONS
from multipy.plugins.contract import DELEGATE_GROUP, Services
from multipy.plugins.registry import Registry

PAIRS = 50


class IpamOnly:
    """A main plugin with no link to make: it runs its IPAM through Services.ipam and names CNI_IFNAME."""

    supported_versions = SUPPORTED_VERSIONS

    def __init__(self, services: Services) -> None:
        self.services = services

    def add(self, inv, conf):
        result = self.services.ipam(inv, conf)
        result.interfaces = [Interface(inv.ifname, sandbox=inv.netns)]
        for ip in result.ips:
            ip.interface = 0
        return result

    def delete(self, inv, conf):
        self.services.ipam(inv, conf)

    def check(self, inv, conf):
        self.services.ipam(inv, conf)

    def gc(self, inv, conf): ...

    def status(self, inv, conf): ...


def conf(tmp_path) -> bytes:
    def net(name: str, subnet: str) -> dict:
        ipam = {"type": "host-local", "dataDir": str(tmp_path / "ipam"), "ranges": [[{"subnet": subnet}]]}
        return {"name": name, "type": "ipam-only", "ipam": ipam}

    return json.dumps({
        "cniVersion": "1.0.0", "name": "busy", "type": "multus-cni", "cniDir": str(tmp_path / "cache"),
        "binDir": str(tmp_path / "bin"), "delegates": [net("net-a", "10.50.0.0/24"), net("net-b", "10.60.0.0/24")],
    }).encode()  # fmt: skip


def serve(command: str, container_id: str, stdin: bytes, registry: Registry, services: Services) -> tuple[int, str]:
    """One request in process, as a daemon hands it to the same skeleton and wiring as multus-cni."""
    environ = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": f"/run/netns/{container_id}",
               "CNI_IFNAME": "eth0", "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME={container_id}",
               "CNI_PATH": ""}  # fmt: skip
    out = io.StringIO()
    code = skel.run(lambda request, log: entry.build(request, log, registry, services),
                    environ=environ, stdin=io.BytesIO(stdin), stdout=out)  # fmt: skip
    return code, out.getvalue()


def test_fifty_concurrent_add_del_pairs_share_one_registry_and_services(tmp_path):
    registry = Registry(extra={DELEGATE_GROUP: {"ipam-only": IpamOnly}}, index_path=str(tmp_path / "index.json"))
    services = Services()
    stdin = conf(tmp_path)
    held: dict[str, list[str]] = {}

    def reservations() -> None:  # run once, while every pod holds its addresses
        for network in ("net-a", "net-b"):
            held[network] = [n for n in os.listdir(tmp_path / "ipam" / network) if n[0].isdigit()]

    all_added = threading.Barrier(PAIRS, action=reservations)
    outcomes: dict[str, list] = {}

    def pod(n: int) -> None:
        cid = f"pod{n:02d}"
        added = serve("ADD", cid, stdin, registry, services)
        try:
            all_added.wait(timeout=120)
        except threading.BrokenBarrierError:
            pass  # another pod failed: still DEL, and the assertions below say which
        outcomes[cid] = [added, serve("DEL", cid, stdin, registry, services)]

    threads = [threading.Thread(target=pod, args=(n,)) for n in range(PAIRS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)

    failed = {cid: o for cid, o in outcomes.items() if o[0][0] != 0 or o[1][0] != 0}
    assert len(outcomes) == PAIRS and failed == {}
    addresses = [json.loads(o[0][1])["ips"][0]["address"] for o in outcomes.values()]
    assert len(set(addresses)) == PAIRS  # held at once: each pod its own eth0 address
    assert {network: len(ips) for network, ips in held.items()} == {"net-a": PAIRS, "net-b": PAIRS}
    # Nothing left behind: no record, no reservation, no temporary file.
    assert [n for n in os.listdir(tmp_path / "cache") if n != "internal"] == []
    for network in ("net-a", "net-b"):
        left = sorted(os.listdir(tmp_path / "ipam" / network))
        assert [n for n in left if n != "lock" and not n.startswith("last_reserved_ip.")] == []
    # The shared objects are as they were made.
    assert services.ipam is None and services.delegate is None
