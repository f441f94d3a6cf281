"""A container of conf/daemonset.yaml as `podman run` arguments: what kubelet would give it.

Its command, its securityContext (as podman's flags), and its volumes: each hostPath under a
directory standing for the node's /, the projected conf and Secret files, and the service account
kubelet mounts, from directories the caller fills. No resource limit is taken from the manifest: the
caller gives podman the one it tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

CONF = Path(__file__).resolve().parents[2] / "conf"
SERVICEACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# What kubelet puts in every container's environment (the API server's service), for --kubeconfig.
KUBERNETES_ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def load(name: str = "daemonset.yaml") -> tuple[dict, dict]:
    """(ConfigMap, DaemonSet) of the manifest `name` in conf/."""
    with open(CONF / name) as f:
        kinds = {doc["kind"]: doc for doc in yaml.safe_load_all(f) if doc}
    return kinds["ConfigMap"], kinds["DaemonSet"]


def init_container(ds: dict) -> dict:
    (init,) = ds["spec"]["template"]["spec"]["initContainers"]
    return init


def security_flags(security: dict) -> list[str]:
    """securityContext as podman run flags; an unknown key is an error, never silently dropped."""
    flags = []
    for key, value in security.items():
        if key == "runAsUser":
            flags += ["--user", str(value)]
        elif key == "allowPrivilegeEscalation":
            flags += [] if value else ["--security-opt", "no-new-privileges"]
        elif key == "readOnlyRootFilesystem":
            # podman would add tmpfs on /run, /tmp and /var/tmp to a read-only root; kubelet does not.
            flags += ["--read-only", "--read-only-tmpfs=false"] if value else []
        elif key == "capabilities":
            flags += [f for cap in value.get("drop", []) for f in ("--cap-drop", cap)]
            flags += [f for cap in value.get("add", []) for f in ("--cap-add", cap)]
        elif key == "privileged":
            flags += ["--privileged"] if value else []
        else:
            raise ValueError(f"securityContext.{key}: not translated to podman")
    return flags


def volume_flags(container: dict, ds: dict, node_root: str, sources: dict[str, str]) -> list[str]:
    """-v flags: hostPath volumes from under `node_root` (created as their type says), every other
    volume from the directory `sources` names for it."""
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    flags = []
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "hostPath" in volume:
            host = volume["hostPath"]
            path = os.path.join(node_root, host["path"].lstrip("/"))
            kind = host.get("type", "")
            if kind == "DirectoryOrCreate":
                os.makedirs(path, exist_ok=True)
            elif kind == "FileOrCreate" and not os.path.exists(path):
                open(path, "a").close()
            elif kind == "Directory" and not os.path.isdir(path):
                raise FileNotFoundError(f"hostPath {host['path']} (type Directory) is not in {node_root}")
            # A symlink on the node (/lib -> usr/lib on a merged-/usr node) is followed, as kubelet's bind
            # mount does, inside the node's tree.
            source = _inside(node_root, host["path"])
        else:
            source = sources[mount["name"]]
        flags += ["-v", f"{source}:{mount['mountPath']}{':ro' if mount.get('readOnly') else ''}"]
    return flags


def _inside(root: str, path: str) -> str:
    """`path` of the tree `root` with its symlinks resolved as if `root` were /."""
    current = root
    for part in path.strip("/").split("/"):
        candidate = os.path.join(current, part)
        hops = 0
        while os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise OSError(f"{path}: too many symlinks")
            link = os.readlink(candidate)
            base = root if link.startswith("/") else os.path.dirname(candidate)
            candidate = os.path.normpath(os.path.join(base, link.lstrip("/")))
        current = candidate
    return current


def run_args(container: dict, ds: dict, node_root: str, sources: dict[str, str], serviceaccount: str) -> list[str]:
    """`podman run` arguments (no image) and the command, as kubelet would run `container`."""
    args = security_flags(container.get("securityContext", {}))
    args += volume_flags(container, ds, node_root, sources)
    args += ["-v", f"{serviceaccount}:{SERVICEACCOUNT}:ro"]
    for name, value in KUBERNETES_ENV.items():
        args += ["-e", f"{name}={value}"]
    return args
