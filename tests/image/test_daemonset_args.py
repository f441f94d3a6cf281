"""What tests/image runs the installer container with is what the manifests say (no root needed)."""

from __future__ import annotations

import pytest

from . import daemonset


@pytest.mark.parametrize("manifest", ["daemonset.yaml", "daemonset-thick.yaml"])
def test_the_install_containers_restrictions_become_podmans_flags(manifest, tmp_path):
    _, ds = daemonset.load(manifest)
    init = daemonset.init_container(ds)
    assert daemonset.security_flags(init["securityContext"]) == [
        "--user", "0", "--security-opt", "no-new-privileges", "--read-only", "--read-only-tmpfs=false",
        "--cap-drop", "ALL", "--cap-add", "SYS_CHROOT",
    ]  # fmt: skip
    node = tmp_path / "node"
    (node / "usr/lib").mkdir(parents=True)
    (node / "usr/lib64").mkdir()
    (node / "lib").symlink_to("usr/lib")  # a merged-/usr node
    (node / "lib64").symlink_to("/usr/lib64")  # an absolute link: the node's, not this machine's
    flags = daemonset.volume_flags(init, ds, str(node), {"multipy": "/pod/conf"})
    mounts = {flags[i + 1].split(":")[1]: flags[i + 1] for i in range(0, len(flags), 2)}
    assert mounts == {
        "/etc/multipy": "/pod/conf:/etc/multipy:ro",
        "/host/etc/cni/net.d": f"{node}/etc/cni/net.d:/host/etc/cni/net.d",
        "/host/opt/cni/bin": f"{node}/opt/cni/bin:/host/opt/cni/bin",
        "/host/opt/multipy": f"{node}/opt/multipy:/host/opt/multipy",
        "/host/etc/multipy": f"{node}/etc/multipy:/host/etc/multipy",
        "/host/usr": f"{node}/usr:/host/usr:ro",
        "/host/lib": f"{node}/usr/lib:/host/lib:ro",
        "/host/lib64": f"{node}/usr/lib64:/host/lib64:ro",
    }
    assert (node / "etc/cni/net.d").is_dir()  # DirectoryOrCreate


def test_an_unknown_security_key_is_not_dropped():
    with pytest.raises(ValueError, match="seccompProfile"):
        daemonset.security_flags({"seccompProfile": {"type": "RuntimeDefault"}})
