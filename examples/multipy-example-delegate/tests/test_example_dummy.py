"""The plugin called in process, as multipy calls it, against a real namespace from the test kit.

Needs root (namespaces). Run with `pytest` from this directory once the package is installed
next to multipy (`pip install -e .` into multipy's environment).
"""

from __future__ import annotations

import pytest
from multipy.cni.errors import CNIError
from multipy.net.netlink import Netlink
from multipy.plugins.contract import Invocation, Services
from multipy.testing import kernel

from multipy_example_delegate.plugin import KINDS, ExampleDummy

pytestmark = pytest.mark.netns

CONF = {"cniVersion": "1.0.0", "name": "example", "type": "example-dummy", "address": "192.0.2.10/24"}


def _call(command: str, pod: str, conf: dict):
    plugin = ExampleDummy(Services(netlink=Netlink()))  # multipy makes one per call, as here
    inv = Invocation(command, container_id="c1", netns=f"/run/netns/{pod}", ifname="net1")
    method = {"ADD": plugin.add, "DEL": plugin.delete, "CHECK": plugin.check}[command]
    return method(inv, conf)


def test_add_check_del(netns):
    pod = netns("pod")

    result = _call("ADD", pod, CONF)

    link = kernel.links(pod)["net1"]
    assert link["linkinfo"]["info_kind"] in KINDS  # dummy, or ifb on a kernel without the dummy driver
    assert "UP" in link["flags"]
    assert kernel.addresses(pod, "net1") == {"net1": ["192.0.2.10/24"]}
    assert result.to_json("1.0.0")["interfaces"] == [
        {"name": "net1", "mac": link["address"], "sandbox": f"/run/netns/{pod}"}
    ]
    assert result.to_json("1.0.0")["ips"] == [{"address": "192.0.2.10/24", "interface": 0}]

    checked = dict(CONF, prevResult=result.to_json("1.0.0"))
    _call("CHECK", pod, checked)
    kernel.ip_json(pod, "addr", "flush", "dev", "net1")
    with pytest.raises(CNIError, match="Failed to match addr 192.0.2.10/24 on interface net1"):
        _call("CHECK", pod, checked)

    _call("DEL", pod, CONF)
    assert "net1" not in kernel.links(pod)
    _call("DEL", pod, CONF)  # a second DEL finds nothing to do, and succeeds


@pytest.mark.parametrize("address", [None, "192.0.2.10", "192.0.2.300/24", 7])
def test_bad_address_is_code_7_naming_the_key_and_value(address, netns):
    pod = netns("pod")
    conf = {k: v for k, v in dict(CONF, address=address).items() if v is not None}
    with pytest.raises(CNIError) as caught:
        _call("ADD", pod, conf)
    assert caught.value.code == 7
    assert caught.value.msg.startswith("example-dummy: address: ")
    if address is not None:
        assert str(address) in caught.value.msg
    assert "net1" not in kernel.links(pod)
