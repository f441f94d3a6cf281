"""containerd's CRI plugin as a test fixture: real pod sandboxes, networked by the CNI plugins you install.

For multipy's own tests and for authors of delegates who want to see their plugin run by the runtime
kubelet talks to, with no cluster, no registry and nothing changed on the host:

    with Containerd(netns="node-1") as ctrd:                    # containerd runs in that network namespace
        ctrd.install_plugins("/usr/lib/cni", ["loopback"])       # containerd runs loopback itself
        ctrd.install_multipy()                                   # bin_dir/multus-cni
        ctrd.write_conf(conf)                                    # conf_dir/10-multus.conf (or a conflist)
        pod = ctrd.run_pod("web-1", annotations={...})           # RunPodSandbox: CNI ADD
        pod.ip, pod.additional_ips, pod.pid, pod.netns           # PodSandboxStatus; /proc/<pause pid>/ns/net
        ctrd.in_pod(pod, "ip", "-j", "address")                  # a command in the pod's network namespace
        ctrd.stop_pod(pod); ctrd.remove_pod(pod)                 # StopPodSandbox, RemovePodSandbox: CNI DELs

What it sets up (containerd 1.6, Debian's `containerd` and `runc`; see Makefile `deps`):

- containerd started with its own config; root, state, gRPC socket and the CRI plugin's CNI `bin_dir`
  and `conf_dir` in a temp dir. `SystemdCgroup = false`, `restrict_oom_score_adj = true` (runc fails
  otherwise where CAP_SYS_RESOURCE is missing), `netns_mounts_under_state_dir = true`.
- a private mount namespace (`unshare --mount --propagation private`) in which `/var/lib` is an overlay
  whose upper dir is a tmpfs, so libcni's cache (`/var/lib/cni/results`) never reaches the host, and
  `/run/containerd` (shim sockets, hard-coded in containerd 1.6) is a tmpfs. Pod netns files exist only
  in there: reach a pod's namespace through `/proc/<pause pid>/ns/net` (`Pod.netns`) and containerd's
  view of the files through `view(path)`.
- `netns`: containerd (and so every CNI plugin it runs) lives in that network namespace, e.g. a test's
  "node"; links made by plugins (bridges, veths, macvlans) stay in there. None: the caller's namespace.
- a pause image built here: a 20-line static C program (`cri/pause.c`, `gcc -static`) in a one-layer
  OCI image written from Python and imported with `ctr`; no registry.
- every sandbox gets `cgroup_parent` = a cgroup of the kit's own, so teardown finds its processes.
- a CRI client: `cri/cri.proto` (just the calls used, runtime.v1 numbering), stubs generated with
  grpcio-tools into the temp dir at start.

close() (also on a failed start, and by the context manager) stops and removes every sandbox still
known through CRI (so plugins get their DELs), stops containerd, kills by PID whatever is left in its
mount namespace (shims) and in its cgroups (pause processes), removes those cgroups and the temp dir.
Nothing else is signalled. The mount namespace, with its overlay, tmpfs and netns bind mounts, ends
with its last process.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .runtime import executable, unique

CRI_DIR = Path(__file__).parent / "cri"
CONTAINERD_BIN = os.environ.get("CONTAINERD_BIN") or shutil.which("containerd") or "/usr/bin/containerd"
CTR_BIN = shutil.which("ctr") or "/usr/bin/ctr"
RUNC_BIN = shutil.which("runc") or "/usr/sbin/runc"
GO_PLUGINS = "/usr/lib/cni"
PAUSE_IMAGE = "registry.multipy.test/pause:kit"
NAMESPACE = "k8s.io"  # containerd's namespace for CRI
CGROUP_ROOT = "/sys/fs/cgroup"
RUN_CONTAINERD = "/run/containerd"  # containerd 1.6's shim sockets, wherever its state dir is
MADE_BY_KIT = "trusted.multipy-test-kit"  # xattr on a /run/containerd that a kit created
START_TIMEOUT = 30.0
CALL_TIMEOUT = 120.0  # one CRI call; a RunPodSandbox runs every CNI plugin of the pod
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerdError(RuntimeError):
    pass


class CRIError(RuntimeError):
    """A CRI call that failed: `code` is the gRPC status name (UNKNOWN, NOT_FOUND, DEADLINE_EXCEEDED, ...)."""

    def __init__(self, call: str, code: str, message: str):
        super().__init__(f"{call}: {code}: {message}")
        self.call, self.code, self.message = call, code, message


@dataclass
class Pod:
    """A sandbox the kit ran: its CRI ID, metadata and what PodSandboxStatus said after it started."""

    id: str
    name: str
    namespace: str
    uid: str
    annotations: dict[str, str] = field(default_factory=dict)
    ip: str = ""
    additional_ips: list[str] = field(default_factory=list)
    pid: int = 0  # the pause process, in the caller's pid namespace

    @property
    def netns(self) -> str:
        """The pod's network namespace as seen from outside containerd's mount namespace."""
        return f"/proc/{self.pid}/ns/net"


# -- the pause image


def build_pause(directory: str) -> str:
    """Compiles cri/pause.c statically into `directory`; returns the binary's path."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ContainerdError("gcc is missing: the pause image is built from cri/pause.c (make deps installs gcc, libc6-dev)")
    out = os.path.join(directory, "pause")
    done = subprocess.run([gcc, "-static", "-O2", "-s", "-o", out, str(CRI_DIR / "pause.c")], capture_output=True, text=True)
    if done.returncode != 0:
        raise ContainerdError(f"cannot build the pause binary (static libc from libc6-dev?): {done.stderr.strip()}")
    return out


def _blob(layout: dict[str, bytes], data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    layout["blobs/sha256/" + digest.split(":", 1)[1]] = data
    return digest


def oci_image_tar(path: str, binary: str, name: str, entrypoint: str = "/pause") -> str:
    """Writes a one-layer OCI image archive holding `binary` as `entrypoint`, tagged `name`.

    The layer is an uncompressed tar, so its digest is its diff ID. Both `ctr images import` and
    `podman load` read this archive (`io.containerd.image.name` / `org.opencontainers.image.ref.name`)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        with open(binary, "rb") as f:
            data = f.read()
        info = tarfile.TarInfo(entrypoint.lstrip("/"))
        info.size, info.mode, info.mtime = len(data), 0o755, 0
        tar.addfile(info, io.BytesIO(data))
    layout: dict[str, bytes] = {}
    layer_bytes = layer.getvalue()
    layer_digest = _blob(layout, layer_bytes)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": [entrypoint], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "multipy.testing.containerd"}],
    }  # fmt: skip
    config_bytes = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _blob(layout, config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer_bytes)}],
    }  # fmt: skip
    manifest_bytes = json.dumps(manifest).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": _blob(layout, manifest_bytes), "size": len(manifest_bytes),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
        }],
    }  # fmt: skip
    layout["oci-layout"] = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()
    layout["index.json"] = json.dumps(index).encode()
    with tarfile.open(path, "w") as tar:
        for member_name in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(member_name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for member_name, data in layout.items():
            info = tarfile.TarInfo(member_name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


# -- the CRI client


def cri_stubs(directory: str):
    """Generates the Python stubs of cri/cri.proto into `directory` (grpcio-tools) and imports them.

    Returns (messages module, grpc module). Each call gets its own module names, so two kits in one
    process never share generated modules."""
    from grpc_tools import protoc  # test extra: grpcio-tools

    os.makedirs(directory, exist_ok=True)
    shutil.copy(CRI_DIR / "cri.proto", os.path.join(directory, "cri.proto"))
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    status = protoc.main(["protoc", f"-I{directory}", f"-I{include}", f"--python_out={directory}",
                          f"--grpc_python_out={directory}", os.path.join(directory, "cri.proto")])  # fmt: skip
    if status != 0:
        raise ContainerdError(f"protoc failed on {CRI_DIR / 'cri.proto'} ({status})")
    sys.path.insert(0, directory)
    try:
        for stale in ("cri_pb2", "cri_pb2_grpc"):
            sys.modules.pop(stale, None)
        messages = importlib.import_module("cri_pb2")
        services = importlib.import_module("cri_pb2_grpc")
    finally:
        sys.path.remove(directory)
        # The generated modules stay reachable through the returned objects only.
        sys.modules.pop("cri_pb2", None)
        sys.modules.pop("cri_pb2_grpc", None)
    return messages, services


_STUBS: tuple | None = None
_STUBS_LOCK = threading.Lock()
_STUBS_DIR: str | None = None


def _shared_stubs():
    """The stubs, generated once per process into a temp dir removed at exit."""
    global _STUBS, _STUBS_DIR
    with _STUBS_LOCK:
        if _STUBS is None:
            import atexit

            _STUBS_DIR = tempfile.mkdtemp(prefix="multipy-cri-stubs-")
            atexit.register(shutil.rmtree, _STUBS_DIR, True)
            _STUBS = cri_stubs(_STUBS_DIR)
        return _STUBS


def _json_or_text(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value


class CRIClient:
    """The five calls of cri/cri.proto over containerd's unix socket. Thread-safe (one gRPC channel)."""

    def __init__(self, socket_path: str, timeout: float = CALL_TIMEOUT):
        # grpc's fork handlers deadlock the netns forks of a process that used grpc (see clients/etcd.py).
        os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
        import grpc

        self._grpc = grpc
        self.pb, services = _shared_stubs()
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")
        self.stub = services.RuntimeServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _call(self, name: str, request, timeout: float | None = None):
        try:
            return getattr(self.stub, name)(request, timeout=timeout or self.timeout)
        except self._grpc.RpcError as error:
            raise CRIError(name, error.code().name, error.details() or "") from None

    def version(self, timeout: float | None = None):
        return self._call("Version", self.pb.VersionRequest(version="v1"), timeout)

    def status(self, timeout: float | None = None):
        """(RuntimeStatus, info): info is containerd's verbose info, each value decoded from JSON."""
        reply = self._call("Status", self.pb.StatusRequest(verbose=True), timeout)
        return reply.status, {key: _json_or_text(value) for key, value in reply.info.items()}

    def run_pod_sandbox(self, name: str, namespace: str, uid: str, *, annotations=None, labels=None,
                        cgroup_parent: str = "", attempt: int = 0, timeout: float | None = None) -> str:  # fmt: skip
        pb = self.pb
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=attempt),
            hostname=name, annotations=dict(annotations or {}), labels=dict(labels or {}),
            linux=pb.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent),
        )  # fmt: skip
        return self._call("RunPodSandbox", pb.RunPodSandboxRequest(config=config), timeout).pod_sandbox_id

    def stop_pod_sandbox(self, sandbox_id: str, timeout: float | None = None) -> None:
        self._call("StopPodSandbox", self.pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout)

    def remove_pod_sandbox(self, sandbox_id: str, timeout: float | None = None) -> None:
        self._call("RemovePodSandbox", self.pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout)

    def pod_sandbox_status(self, sandbox_id: str, verbose: bool = True, timeout: float | None = None):
        """(status, info): info is containerd's verbose "info" JSON, decoded ({} when not verbose)."""
        reply = self._call("PodSandboxStatus", self.pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose), timeout)
        info = json.loads(reply.info["info"]) if "info" in reply.info else {}
        return reply.status, info


# -- containerd


def _config(base: str, cni_bin: str, cni_conf: str, max_conf_num: int) -> str:
    return f"""version = 2
root = "{base}/root"
state = "{base}/state"
oom_score = 0
# Plugins that would look at or write host paths (/opt/containerd) or are not needed.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{base}/containerd.sock"
[ttrpc]
  address = "{base}/containerd.sock.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_cgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = {max_conf_num}
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{RUNC_BIN}"
        Root = "{base}/runc"
"""


# Runs as the containerd process itself (exec): private mounts first, then containerd.
_LAUNCH = """set -e
mount -t tmpfs -o mode=0700 multipy-kit "$KIT/mnt"
mkdir "$KIT/mnt/upper" "$KIT/mnt/work"
mount -t overlay multipy-kit -o "lowerdir=/var/lib,upperdir=$KIT/mnt/upper,workdir=$KIT/mnt/work" /var/lib
mkdir -p /run/containerd
mount -t tmpfs -o mode=0711 multipy-kit /run/containerd
exec "$CONTAINERD" --config "$KIT/config.toml"
"""


def _mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _pids_in_mount_ns(ns: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _mnt_ns(int(entry)) == ns:
            pids.append(int(entry))
    return pids


def cgroup_dirs(parent: str) -> list[str]:
    """The cgroup `parent` in every hierarchy that has it (v1 controllers, or the v2 tree)."""
    found = []
    relative = parent.lstrip("/")
    top = os.path.join(CGROUP_ROOT, relative)
    if os.path.isdir(top) and os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        found.append(top)
    for controller in os.listdir(CGROUP_ROOT) if os.path.isdir(CGROUP_ROOT) else []:
        path = os.path.join(CGROUP_ROOT, controller, relative)
        if os.path.isdir(path):
            found.append(path)
    return found


def cgroup_pids(parent: str) -> list[int]:
    """Every process in `parent` or below it."""
    pids = set()
    for top in cgroup_dirs(parent):
        for root, _dirs, files in os.walk(top):
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(root, "cgroup.procs")) as f:
                        pids.update(int(line) for line in f if line.strip())
                except OSError:
                    pass
    return sorted(pids)


def remove_cgroups(parent: str) -> None:
    """rmdir `parent` and its children in every hierarchy (their processes must be gone)."""
    for top in cgroup_dirs(parent):
        for _ in range(20):
            for root, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                try:
                    os.rmdir(root)
                except OSError:
                    pass
            if not os.path.exists(top):
                break
            time.sleep(0.1)


def kill_all(mount_ns: str | None, cgroup_parent: str) -> None:
    """SIGKILL, by PID, every process in mount namespace `mount_ns` or in cgroup `cgroup_parent`, until none is left."""
    for _ in range(50):
        pids = (_pids_in_mount_ns(mount_ns) if mount_ns else []) + cgroup_pids(cgroup_parent)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


class Containerd:
    """One containerd with the CRI plugin, private to the caller (see the module's docstring)."""

    def __init__(self, netns: str | None = None, directory: str | None = None, max_conf_num: int = 1,
                 env: dict[str, str] | None = None, call_timeout: float = CALL_TIMEOUT):  # fmt: skip
        self.netns = netns  # a name under /run/netns, or a path
        self._owns_directory = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="multipy-containerd-")
        self.cni_bin_dir = os.path.join(self.directory, "cni", "bin")
        self.cni_conf_dir = os.path.join(self.directory, "cni", "net.d")
        self.socket = os.path.join(self.directory, "containerd.sock")
        self.log_file = os.path.join(self.directory, "containerd.log")
        self.max_conf_num = max_conf_num
        self.env = dict(env or {})
        self.call_timeout = call_timeout
        self.cgroup_parent = "/" + unique("multipy-ctrd-")
        self.process: subprocess.Popen | None = None
        self.mount_ns: str | None = None
        self.cri: CRIClient | None = None
        self.pods: dict[str, Pod] = {}  # sandbox ID -> Pod, until removed
        self._lock = threading.Lock()
        self._made_run_containerd = False
        self._ns_pin: int | None = None  # an fd on containerd's mount namespace (see _pin_mount_ns)
        self.leftover_errors: list[str] = []  # sandboxes close() could not stop/remove through CRI

    # -- lifecycle

    def start(self) -> Containerd:
        """Starts containerd and imports the pause image. On failure everything is torn down."""
        try:
            for d in (self.cni_bin_dir, self.cni_conf_dir, os.path.join(self.directory, "mnt"), os.path.join(self.directory, "runc")):
                os.makedirs(d, exist_ok=True)
            with open(os.path.join(self.directory, "config.toml"), "w") as f:
                f.write(_config(self.directory, self.cni_bin_dir, self.cni_conf_dir, self.max_conf_num))
            image = oci_image_tar(os.path.join(self.directory, "pause.tar"), build_pause(self.directory), PAUSE_IMAGE)
            self._spawn()
            self._wait_ready()
            self._import(image)
            return self
        except BaseException:
            self.close()
            raise

    def _spawn(self) -> None:
        if not os.path.isdir(RUN_CONTAINERD):
            # The mount point of the private tmpfs: empty on the host. Marked, so that whichever kit
            # closes last removes it (kits may overlap, e.g. one per row in bench/runtime.py).
            os.makedirs(RUN_CONTAINERD, mode=0o711, exist_ok=True)
            try:
                os.setxattr(RUN_CONTAINERD, MADE_BY_KIT, b"1")
            except OSError:
                self._made_run_containerd = True
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _LAUNCH]
        if self.netns:
            path = self.netns if "/" in self.netns else f"/run/netns/{self.netns}"
            argv = ["nsenter", f"--net={path}", *argv]
        env = {"PATH": PATH, "KIT": self.directory, "CONTAINERD": CONTAINERD_BIN, "HOME": self.directory,
               "TMPDIR": self.directory, **self.env}  # fmt: skip
        with open(self.log_file, "ab") as log:
            # Its own session: a Ctrl-C aimed at pytest must not kill containerd before close() does.
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                            start_new_session=True)  # fmt: skip

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ContainerdError(f"containerd exited ({self.process.returncode}): {self.log_tail()}")
            if self.mount_ns is None:
                self._pin_mount_ns()
            if os.path.exists(self.socket) and self.mount_ns is not None:
                if self.cri is None:
                    self.cri = CRIClient(self.socket, self.call_timeout)
                try:
                    self.cri.version(timeout=2)
                    return
                except CRIError:
                    pass
            time.sleep(0.05)
        raise ContainerdError(f"containerd's CRI not serving within {START_TIMEOUT:g} s: {self.log_tail()}")

    def _pin_mount_ns(self) -> None:
        """Holds containerd's private mount namespace open until close(): a freed namespace's inode
        number goes to the next one made (every `ip netns exec` makes one), and close() kills by that
        number, so it must keep naming this one, also after containerd itself died."""
        try:
            fd = os.open(f"/proc/{self.process.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        ns = os.readlink(f"/proc/self/fd/{fd}")
        if ns == _mnt_ns(os.getpid()):  # still before unshare
            os.close(fd)
            return
        self._ns_pin, self.mount_ns = fd, ns

    def _import(self, image: str) -> None:
        self.ctr("images", "import", "--all-platforms", image)

    def ctr(self, *args: str) -> str:
        """Runs `ctr` against this containerd, in its k8s.io namespace, from inside its mount namespace."""
        argv = ["nsenter", f"--mount=/proc/{self.process.pid}/ns/mnt", CTR_BIN, "-a", self.socket, "-n", NAMESPACE, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise ContainerdError(f"ctr {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def close(self) -> None:
        """Tears everything down (idempotent): sandboxes through CRI, then containerd, shims, pause
        processes, cgroups, the temp dir. Never raises for what is already gone."""
        errors: list[str] = []
        if self.cri is not None and self.running:
            for pod in list(self.pods.values()):
                try:
                    self.stop_pod(pod, timeout=30)
                    self.remove_pod(pod, timeout=30)
                except Exception as error:  # teardown goes on: the kill below ends what is left
                    errors.append(f"{pod.name}: {error}")
        if self.cri is not None:
            self.cri.close()
            self.cri = None
        ns = self.mount_ns if self._ns_pin is not None else None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        # Shims (and anything they started) live in containerd's mount namespace; pause processes in
        # the kit's cgroups.
        try:
            kill_all(ns, self.cgroup_parent)
        finally:
            if self._ns_pin is not None:
                os.close(self._ns_pin)
                self._ns_pin = None
        self._remove_cgroups()
        self._remove_run_containerd()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.pods.clear()
        self.leftover_errors = errors

    def __enter__(self) -> Containerd:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_file, errors="replace") as f:
                return "\n".join(f.read().strip().splitlines()[-lines:])
        except OSError:
            return ""

    # -- cgroups and host paths

    def _cgroup_dirs(self) -> list[str]:
        return cgroup_dirs(self.cgroup_parent)

    def _cgroup_pids(self) -> list[int]:
        return cgroup_pids(self.cgroup_parent)

    def _remove_cgroups(self) -> None:
        remove_cgroups(self.cgroup_parent)

    def cgroups_left(self) -> list[str]:
        return self._cgroup_dirs()

    def _remove_run_containerd(self) -> None:
        """rmdir the empty mount point a kit made, unless another process's mount namespace (another
        kit's containerd) has a mount on it: then that kit's close() removes it."""
        try:
            marked = os.getxattr(RUN_CONTAINERD, MADE_BY_KIT) == b"1"
        except OSError:
            marked = False
        try:
            if not (marked or self._made_run_containerd) or os.listdir(RUN_CONTAINERD):
                return
        except OSError:
            return
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/mountinfo") as f:
                    if any(line.split()[4] == "/run/containerd" for line in f):
                        return
            except (OSError, IndexError):
                continue
        try:
            os.rmdir(RUN_CONTAINERD)
        except OSError:
            pass

    def view(self, path: str) -> str:
        """`path` as containerd sees it (its private /var/lib, its netns mounts), while it runs."""
        return f"/proc/{self.process.pid}/root{path}"

    def libcni_cache(self) -> list[str]:
        """libcni's cached results (/var/lib/cni/results inside containerd's mount namespace)."""
        results = self.view("/var/lib/cni/results")
        return sorted(os.listdir(results)) if os.path.isdir(results) else []

    def netns_files(self) -> list[str]:
        """The pod netns files containerd still has under its state dir."""
        where = self.view(os.path.join(self.directory, "state", "io.containerd.grpc.v1.cri", "netns"))
        return sorted(os.listdir(where)) if os.path.isdir(where) else []

    # -- CNI plugins and confs

    def install_plugins(self, source: str = GO_PLUGINS, names: list[str] | tuple[str, ...] = ("loopback",)) -> None:
        """Symlinks plugin binaries from `source` into containerd's CNI bin_dir (containerd runs `loopback` itself)."""
        for name in names:
            self.install_executable(os.path.join(source, name), name)

    def install_executable(self, path: str, name: str | None = None) -> str:
        target = os.path.join(self.cni_bin_dir, name or os.path.basename(path))
        if os.path.lexists(target):
            os.unlink(target)
        os.symlink(path, target)
        return target

    def install_multipy(self, name: str = "multus-cni") -> str:
        """multipy's CNI executable (the console script of this interpreter's environment) as `name`."""
        return self.install_executable(executable("multus-cni"), name)

    def write_conf(self, conf: dict, name: str | None = None) -> str:
        """Writes `conf` into conf_dir, replacing every conf there (a conflist when it has "plugins").

        containerd notices the change (inotify) and reloads asynchronously; while it runs, this waits
        until its verbose Status lists `conf` as the loaded network, so the next sandbox gets it."""
        name = name or ("10-multus.conflist" if "plugins" in conf else "10-multus.conf")
        for old in os.listdir(self.cni_conf_dir):
            os.unlink(os.path.join(self.cni_conf_dir, old))
        path = os.path.join(self.cni_conf_dir, name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(conf, f, indent=1)
        os.rename(tmp, os.path.join(self.cni_conf_dir, name))
        if self.running and self.cri is not None:
            self.wait_conf(conf)
        return path

    def loaded_confs(self) -> list[list[dict]]:
        """The plugin lists of the networks containerd has loaded (its own loopback left out)."""
        _status, info = self.cri.status()
        networks = (info.get("cniconfig") or {}).get("Networks") or []
        return [[json.loads(p["Source"]) for p in n["Config"]["Plugins"]] for n in networks if n.get("IFName") != "lo"]

    def wait_conf(self, conf: dict, timeout: float = 15.0) -> None:
        expected = conf["plugins"] if "plugins" in conf else [conf]
        deadline = time.monotonic() + timeout
        while True:
            loaded = self.loaded_confs()
            if expected in loaded:
                return
            if time.monotonic() > deadline:
                raise ContainerdError(f"containerd did not load the new conf within {timeout:g} s: it has {loaded}")
            time.sleep(0.02)

    # -- pods

    def run_pod(self, name: str, namespace: str = "default", uid: str | None = None, annotations=None, labels=None,
                timeout: float | None = None) -> Pod:  # fmt: skip
        """RunPodSandbox, then PodSandboxStatus; raises CRIError (e.g. a CNI ADD that failed)."""
        uid = uid or unique(f"uid-{name}-")
        sandbox_id = self.cri.run_pod_sandbox(name, namespace, uid, annotations=annotations, labels=labels,
                                              cgroup_parent=self.cgroup_parent, timeout=timeout)  # fmt: skip
        pod = Pod(sandbox_id, name, namespace, uid, dict(annotations or {}))
        with self._lock:
            self.pods[sandbox_id] = pod
        self.refresh(pod)
        return pod

    def refresh(self, pod: Pod) -> Pod:
        status, info = self.cri.pod_sandbox_status(pod.id)
        pod.ip = status.network.ip
        pod.additional_ips = [a.ip for a in status.network.additional_ips]
        pod.pid = int(info.get("pid") or 0)
        return pod

    def status(self, pod: Pod | str):
        """(PodSandboxStatus, containerd's verbose info)."""
        return self.cri.pod_sandbox_status(pod.id if isinstance(pod, Pod) else pod)

    def stop_pod(self, pod: Pod | str, timeout: float | None = None) -> None:
        self.cri.stop_pod_sandbox(pod.id if isinstance(pod, Pod) else pod, timeout=timeout)

    def remove_pod(self, pod: Pod | str, timeout: float | None = None) -> None:
        sandbox_id = pod.id if isinstance(pod, Pod) else pod
        self.cri.remove_pod_sandbox(sandbox_id, timeout=timeout)
        with self._lock:
            self.pods.pop(sandbox_id, None)

    def in_pod(self, pod: Pod, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Runs argv in the pod's network namespace (through the pause process)."""
        done = subprocess.run(["nsenter", f"--net={pod.netns}", *argv], capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise ContainerdError(f"{' '.join(argv)} in {pod.name}: {done.stdout}{done.stderr}")
        return done

    def addresses(self, pod: Pod) -> dict[str, list[str]]:
        """ifname -> ["addr/prefix", ...] (IPv4 and global IPv6) inside the pod."""
        out = json.loads(self.in_pod(pod, "ip", "-j", "address", "show").stdout)
        return {link["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("scope") != "link"]
                for link in out}  # fmt: skip
