"""The real `multus-cni`, run twice as a runtime runs it, with logLevel debug and a kubeconfig
holding a token: the log file is appended to, every line names its container and pod, and no
secret reaches it, although a delegate prints the kubeconfig, a bearer header and a private key
to its stderr (which multipy logs at debug)."""

from __future__ import annotations

import json
import re

import pytest

from multipy.net.netns import run_in
from multipy.testing.kube_api import KubeAPIServer

PEM_BODY = "MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"
PODS = {"c-log-1": "web-1", "c-log-2": "web-2"}


@pytest.fixture
def api(node, tmp_path):
    """The local API server inside the node's namespace, where multus-cni runs."""
    (tmp_path / "kube").mkdir()
    server = KubeAPIServer(directory=str(tmp_path / "kube"))
    try:
        run_in(f"/run/netns/{node.name}", server.start)
        for name in PODS.values():
            server.add_pod("default", name)
        yield server
    finally:
        server.close()


def leaky_delegate(bin_dir, kubeconfig: str, token: str) -> None:
    """A CNI plugin that spills secrets on stderr, as a careless one may, and succeeds."""
    bin_dir.mkdir()
    script = bin_dir / "leaky"
    script.write_text(f"""#!/bin/sh
cat > /dev/null
echo "loading {kubeconfig}:" >&2
cat '{kubeconfig}' >&2
echo "GET /api/v1/pods Authorization: Bearer {token}" >&2
printf '%s\\n' '-----BEGIN RSA PRIVATE KEY-----' '{PEM_BODY}' '-----END RSA PRIVATE KEY-----' >&2
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{{"cniVersion": "0.3.1", "interfaces": [{{"name": "eth0"}}], "ips": []}}'
fi
""")
    script.chmod(0o755)


def test_two_runs_appended_tagged_and_free_of_secrets(tmp_path, node, netns, cni_runtime, api):
    log_file = tmp_path / "multipy.log"
    log_file.write_text("a line from before\n")
    leaky_delegate(tmp_path / "bin", api.kubeconfig, api.token)
    conf = {
        "cniVersion": "0.3.1", "name": "multus-demo", "type": "multus-cni",
        "kubeconfig": api.kubeconfig, "cniDir": str(tmp_path / "cache"), "binDir": str(tmp_path / "bin"),
        "logFile": str(log_file), "logLevel": "debug",
        "delegates": [{"name": "leak", "type": "leaky", "masterplugin": True}],
    }  # fmt: skip
    for cid, pod in PODS.items():
        args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={cid}"
        out = cni_runtime("ADD", conf, container_id=cid, netns=f"/run/netns/{netns('pod')}", ifname="eth0",
                          cni_args=args)  # fmt: skip
        assert out.ok, out.stdout + out.stderr
        assert json.loads(out.stdout)["cniVersion"] == "0.3.1"

    text = log_file.read_text()
    lines = text.splitlines()
    assert lines[0] == "a line from before"  # appended to, never truncated
    tags = [re.search(r" \[(\S+) (\S+)\] ", line) for line in lines[1:]]
    assert all(tags), [line for line, tag in zip(lines[1:], tags, strict=True) if not tag]
    seen = [(tag.group(1), tag.group(2)) for tag in tags]
    assert set(seen) == {(cid, f"default/{pod}") for cid, pod in PODS.items()}
    # Run 1's lines, then run 2's: each run's lines are together and in order.
    first = [n for n, (cid, _) in enumerate(seen) if cid == "c-log-1"]
    assert first == list(range(len(first))) and len(first) < len(seen)
    for cid in PODS:
        own = [line for line in lines[1:] if f"[{cid} " in line]
        assert any("leaky stderr: loading" in line for line in own), own
        assert any(line.endswith("[REDACTED] PRIVATE KEY") for line in own), own
        assert any("Authorization: [REDACTED]" in line for line in own), own
        assert any(line.endswith("token: [REDACTED]") or '"token": "[REDACTED]"' in line for line in own), own

    assert api.token not in text
    assert PEM_BODY not in text
