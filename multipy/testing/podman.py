"""podman (4.x, CNI backend) as a test fixture: containers networked by CNI plugins you install, the host untouched.

    with Podman(netns="node-1") as podman:                 # CNI plugins run in that network namespace
        podman.install_multipy()                            # bin dir: multus-cni
        podman.write_conflist(conflist)                     # podman's networks are conflists, by "name"
        box = podman.run("web-1", network="multipy")        # podman run -d --network multipy <pause image>
        podman.addresses(box)                               # inside the container, through its pid
        podman.remove(box)                                  # podman rm -f: CNI DEL

Every podman command runs in one private mount namespace (kept by a holder process), where `/var/lib`
is an overlay with a tmpfs upper dir (libcni's /var/lib/cni cache), and `/run/netns` (podman's netns
files) and `/dev/shm` (its locks) are tmpfs; podman's config (CONTAINERS_CONF), storage
(CONTAINERS_STORAGE_CONF, --root, --runroot), tmp dir and CNI dirs are in a temp dir. Containers get a
cgroup parent of the kit's own. close() removes the containers (their CNI DELs), then kills by PID what
is left in the mount namespace (conmon) and in the cgroups, and removes cgroups and the temp dir.

What podman sends a CNI plugin: CNI_ARGS with `IgnoreUnknown=1` and `K8S_POD_NAME` (the container's
name) only: no pod namespace, no UID, no annotations.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

from .containerd import PATH, RUNC_BIN, build_pause, cgroup_dirs, kill_all, oci_image_tar, remove_cgroups
from .runtime import executable, unique

PODMAN_BIN = shutil.which("podman") or "/usr/bin/podman"
IMAGE = "localhost/multipy-pause:kit"

_HOLD = """set -e
mount -t tmpfs -o mode=0700 multipy-kit "$KIT/mnt"
mkdir "$KIT/mnt/upper" "$KIT/mnt/work"
mount -t overlay multipy-kit -o "lowerdir=/var/lib,upperdir=$KIT/mnt/upper,workdir=$KIT/mnt/work" /var/lib
mount -t tmpfs -o mode=0755 multipy-kit /run/netns
mount -t tmpfs -o mode=1777 multipy-kit /dev/shm
echo ready
exec sleep infinity
"""


@dataclass
class Container:
    id: str
    name: str
    pid: int

    @property
    def netns(self) -> str:
        return f"/proc/{self.pid}/ns/net"


class PodmanError(RuntimeError):
    pass


class Podman:
    def __init__(self, netns: str | None = None, directory: str | None = None):
        self.netns = netns
        self._owns_directory = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="multipy-podman-")
        self.bin_dir = os.path.join(self.directory, "cni", "bin")
        self.conf_dir = os.path.join(self.directory, "cni", "net.d")
        self.cgroup_parent = "/" + unique("multipy-podman-")
        self.holder: subprocess.Popen | None = None
        self.mount_ns: str | None = None
        self._ns_pin: int | None = None
        self.containers: dict[str, Container] = {}

    def start(self) -> Podman:
        try:
            for d in (self.bin_dir, self.conf_dir, "mnt", "root", "runroot", "tmp"):
                os.makedirs(os.path.join(self.directory, d), exist_ok=True)
            self._write_configs()
            if not os.path.isdir("/run/netns"):
                raise PodmanError("/run/netns is missing: the kit mounts a tmpfs there (ip netns add makes it)")
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _HOLD]
            if self.netns:
                argv = ["nsenter", f"--net={self.netns if '/' in self.netns else '/run/netns/' + self.netns}", *argv]
            self.holder = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           env={"PATH": PATH, "KIT": self.directory}, start_new_session=True)  # fmt: skip
            if self.holder.stdout.readline().strip() != b"ready":
                raise PodmanError(f"cannot set up podman's mount namespace: {self.holder.stderr.read().decode()}")
            # Held open until close(): kill_all finds processes by this namespace's inode number,
            # which a freed namespace would hand to the next one made.
            self._ns_pin = os.open(f"/proc/{self.holder.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            self.mount_ns = os.readlink(f"/proc/self/fd/{self._ns_pin}")
            image = oci_image_tar(os.path.join(self.directory, "pause.tar"), build_pause(self.directory), IMAGE)
            self.podman("load", "-q", "-i", image)
            return self
        except BaseException:
            self.close()
            raise

    def _write_configs(self) -> None:
        d = self.directory
        with open(os.path.join(d, "containers.conf"), "w") as f:
            f.write(f"""[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
tmp_dir = "{d}/tmp"
static_dir = "{d}/root/libpod"
volume_path = "{d}/root/volumes"
[engine.runtimes]
runc = ["{RUNC_BIN}"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["{self.bin_dir}"]
network_config_dir = "{self.conf_dir}"
""")
        with open(os.path.join(d, "storage.conf"), "w") as f:
            f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{d}/root"\nrunroot = "{d}/runroot"\n')
        with open(os.path.join(d, "registries.conf"), "w") as f:
            f.write("unqualified-search-registries = []\n")

    def podman(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Runs `podman args` in the kit's mount and network namespaces, with the kit's config."""
        d = self.directory
        env = {"PATH": PATH, "HOME": d, "TMPDIR": f"{d}/tmp", "CONTAINERS_CONF": f"{d}/containers.conf",
               "CONTAINERS_STORAGE_CONF": f"{d}/storage.conf", "CONTAINERS_REGISTRIES_CONF": f"{d}/registries.conf"}  # fmt: skip
        pid = self.holder.pid
        argv = ["nsenter", f"--mount=/proc/{pid}/ns/mnt", f"--net=/proc/{pid}/ns/net", PODMAN_BIN,
                "--root", f"{d}/root", "--runroot", f"{d}/runroot", "--tmpdir", f"{d}/tmp",
                "--cgroup-manager", "cgroupfs", "--runtime", RUNC_BIN, "--network-config-dir", self.conf_dir, *args]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
        if check and done.returncode != 0:
            raise PodmanError(f"podman {' '.join(args)}: {done.stderr.strip()}")
        return done

    def install_executable(self, path: str, name: str | None = None) -> str:
        target = os.path.join(self.bin_dir, name or os.path.basename(path))
        if os.path.lexists(target):
            os.unlink(target)
        os.symlink(path, target)
        return target

    def install_multipy(self, name: str = "multus-cni") -> str:
        return self.install_executable(executable("multus-cni"), name)

    def write_conflist(self, conflist: dict) -> str:
        path = os.path.join(self.conf_dir, f"{conflist['name']}.conflist")
        with open(path, "w") as f:
            json.dump(conflist, f, indent=1)
        return path

    def run(self, name: str, network: str, *extra: str) -> Container:
        """podman run -d: a pause container attached to `network` (CNI ADD)."""
        cid = self.podman("run", "-d", "--name", name, "--network", network, "--cgroup-parent", self.cgroup_parent,
                          *extra, IMAGE).stdout.strip()  # fmt: skip
        pid = int(self.podman("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip())
        self.containers[cid] = Container(cid, name, pid)
        return self.containers[cid]

    def remove(self, box: Container) -> None:
        """podman rm -f (stop, CNI DEL, remove)."""
        self.podman("rm", "-f", "-t", "0", box.id)
        self.containers.pop(box.id, None)

    def in_container(self, box: Container, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["nsenter", f"--net={box.netns}", *argv], capture_output=True, text=True, timeout=30)
        if check and done.returncode != 0:
            raise PodmanError(f"{' '.join(argv)} in {box.name}: {done.stdout}{done.stderr}")
        return done

    def addresses(self, box: Container) -> dict[str, list[str]]:
        out = json.loads(self.in_container(box, "ip", "-j", "address", "show").stdout)
        return {link["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("scope") != "link"]
                for link in out}  # fmt: skip

    def view(self, path: str) -> str:
        """`path` as podman sees it (its private /var/lib), while the kit runs."""
        return f"/proc/{self.holder.pid}/root{path}"

    def libcni_cache(self) -> list[str]:
        results = self.view("/var/lib/cni/results")
        return sorted(os.listdir(results)) if os.path.isdir(results) else []

    def cgroups_left(self) -> list[str]:
        return cgroup_dirs(self.cgroup_parent)

    def close(self) -> None:
        if self.holder is not None and self.holder.poll() is None:
            for box in list(self.containers.values()):
                try:
                    self.remove(box)
                except Exception:  # the kill below ends what is left
                    pass
        if self.holder is not None and self.holder.poll() is None:
            self.holder.send_signal(signal.SIGKILL)
            self.holder.wait()
        if self.holder is not None:
            for stream in (self.holder.stdout, self.holder.stderr):
                stream.close()
        try:
            kill_all(self.mount_ns if self._ns_pin is not None else None, self.cgroup_parent)  # conmon, containers
        finally:
            if self._ns_pin is not None:
                os.close(self._ns_pin)
                self._ns_pin = None
        time.sleep(0.05)
        remove_cgroups(self.cgroup_parent)
        self.containers.clear()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Podman:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
