"""The image, built here and checked as it ships (issue 15).

- `make image`'s own script (conf/image/build-image.sh: conf/image/Containerfile on a bookworm build
  root) builds it into a temp storage, while mmdebstrap makes Debian 12 and 13 roots without Python;
- the DaemonSet's init container, its command, securityContext and volumes read from
  conf/daemonset.yaml (conf/daemonset-thick.yaml's onto Debian 13), runs under podman against a root
  as its node (the hostPath volumes from it), under 64 MiB, without network: it installs, and a rerun
  changes nothing;
- in both roots the installed `multus-cni`, chrooted as the node's runtime would run it, answers
  VERSION and brings lo up (ADD) and down (DEL) in a network namespace through the native loopback;
- onto a root lacking a library the tree needs (glibc's libm), the install is refused and nothing
  switched: the old launcher and conf stay as they were.

Root only; about 3 minutes, mostly the image build and the roots, made at once. Everything is under
one temp dir removed at the end, every mount is made in a private mount namespace, and the podman
kit (multipy/testing/podman.py) removes its containers, processes and cgroups.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from multipy import __version__
from multipy.testing.podman import Podman

from . import daemonset, node

pytestmark = [pytest.mark.image, pytest.mark.root("builds an image with buildah, mounts, chroots")]

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "conf" / "image" / "build-image.sh"
TAG = f"localhost/multipy:{__version__}"
SUITES = ("bookworm", "trixie")  # Debian 12 and 13
TOOLS = ("mmdebstrap", "buildah", "podman", "runc", "unshare", "chroot", "ip")
BUDGET = 600.0  # seconds for the image and the roots together (about 2 minutes here)
MEMORY = "64m"  # below the DaemonSet's own limits (256Mi, 128Mi): the install must fit in much less
# podman's runc on this VM: it lacks CAP_SYS_RESOURCE, so no raising of these limits (docs: dependencies).
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")
COMPRESSED_MAX = 40_000_000  # bytes: the target for the compressed image
ABSENT = ("kubernetes/aio", "pip", "setuptools", "wheel", "_distutils_hack", "aiohttp", "lib2to3", "idlelib", "test")


@dataclass
class Built:
    base: str
    archive: str  # the image as build-image.sh --archive writes it (buildah push): layers gzip-compressed
    log: str
    seconds: float
    roots: dict[str, str] = field(default_factory=dict)


def _tail(path: str, lines: int = 30) -> str:
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def _start(argv: list[str], log: str, **env: str) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}, start_new_session=True)  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the script and all it started
        proc.wait()


@pytest.fixture(scope="module")
def built():
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (`make test` installs them)")
    base = tempfile.mkdtemp(prefix="multipy-image-test-")
    procs: dict[str, subprocess.Popen] = {}
    try:
        start = time.monotonic()
        log = os.path.join(base, "build.log")
        archive = os.path.join(base, "multipy.oci.tar")
        procs["image"] = _start([str(BUILD), "--storage", f"{base}/storage", "--work", f"{base}/work", "--archive",
                                 archive], log, PYTHON=sys.executable)  # fmt: skip
        for suite in SUITES:  # at the same time as the image: most of the wait is downloads
            procs[suite] = _start(node.mmdebstrap_argv(suite, f"{base}/{suite}"), f"{base}/{suite}.log")
        deadline = start + BUDGET
        for name, proc in procs.items():
            try:
                code = proc.wait(max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name} not built within {BUDGET:g} s")
            logfile = log if name == "image" else f"{base}/{name}.log"
            assert code == 0, f"{name}: exit {code}\n{_tail(logfile)}"
        seconds = time.monotonic() - start
        shutil.rmtree(f"{base}/storage", ignore_errors=True)  # the archive is all the tests need
        yield Built(base, archive, log, seconds, {suite: f"{base}/{suite}" for suite in SUITES})
    finally:
        for proc in procs.values():
            _stop(proc)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def kit(built):
    """podman in a private mount namespace, storage and config in the temp dir, the image loaded."""
    if not os.path.isdir("/run/netns"):  # the kit mounts a tmpfs there in its namespace; `ip netns` makes it
        name = f"multipy-image-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "netns", "del", name], check=True)
    with Podman(directory=os.path.join(built.base, "podman")) as podman:
        podman.podman("load", "-q", "-i", built.archive, timeout=300)
        yield podman


@dataclass
class Install:
    code: int
    out: str
    err: str
    seconds: float


def install(kit: Podman, built: Built, root: str, manifest: str = "daemonset.yaml") -> Install:
    """The init container of the DaemonSet in conf/`manifest` onto the node `root`, as kubelet would
    run it: its command, its securityContext and volumes from the manifest; the projected conf and
    Secret, and the service account, with test content."""
    configmap, ds = daemonset.load(manifest)
    init = daemonset.init_container(ds)
    pod = tempfile.mkdtemp(dir=built.base, prefix="pod-")
    os.makedirs(f"{pod}/projected/etcd")
    Path(f"{pod}/projected/10-multus.conf").write_text(configmap["data"]["10-multus.conf"])
    for name in ("ca.crt", "tls.crt", "tls.key"):
        Path(f"{pod}/projected/etcd/{name}").write_text(f"test {name}\n")
    os.makedirs(f"{pod}/serviceaccount")
    for name, text in (("token", "a-token"), ("ca.crt", "-----BEGIN CERTIFICATE-----\n"), ("namespace", "kube-system")):
        Path(f"{pod}/serviceaccount/{name}").write_text(text)
    args = daemonset.run_args(init, ds, root, {"multipy": f"{pod}/projected"}, f"{pod}/serviceaccount")
    start = time.monotonic()
    done = kit.podman("run", "--rm", "--network", "none", "--memory", MEMORY, *ULIMITS, "--cgroup-parent",
                      kit.cgroup_parent, *args, TAG, *init["command"], check=False, timeout=300)  # fmt: skip
    return Install(done.returncode, done.stdout, done.stderr, time.monotonic() - start)


def _old_node(built: Built) -> str:
    """A copy of the bookworm root (hard links: nothing is written through them) without glibc's libm,
    where an older multipy was installed: a launcher and a conf that must stay as they are."""
    root = os.path.join(built.base, "bookworm-without-libm")
    subprocess.run(["cp", "-al", built.roots["bookworm"], root], check=True)
    os.unlink(f"{root}/usr/lib/x86_64-linux-gnu/libm.so.6")
    os.makedirs(f"{root}/opt/cni/bin")
    os.makedirs(f"{root}/etc/cni/net.d")
    Path(f"{root}/opt/cni/bin/multus-cni").write_text("#!/bin/sh\necho the old multus-cni\n")
    Path(f"{root}/etc/cni/net.d/10-multus.conf").write_text('{"the": "old conf"}\n')
    return root


@pytest.fixture(scope="module")
def installs(built, kit) -> dict[str, Install]:
    old = _old_node(built)  # copied before anything is installed into bookworm
    done = {"bookworm": install(kit, built, built.roots["bookworm"])}
    done["rerun"] = install(kit, built, built.roots["bookworm"])
    done["trixie"] = install(kit, built, built.roots["trixie"], "daemonset-thick.yaml")  # thick mode's, there
    done["without-libm"] = install(kit, built, old)
    print("install times (s): " + ", ".join(f"{name} {result.seconds:.1f}" for name, result in done.items()))
    return done


def _part(name: str) -> str | None:
    """The part of the runtime tree `name` belongs to, for the size report: a package, the stdlib, a library."""
    if not name.startswith("opt/multipy/"):
        return None
    parts = name.removeprefix("opt/multipy/").split("/")
    if parts[:3] == ["lib", "python3", "dist-packages"] and len(parts) > 3:
        return parts[3].split("-")[0] if parts[3].endswith(".dist-info") else parts[3]
    if parts[:2] == ["lib", "python3.11"] and len(parts) > 2:
        return "stdlib extensions (lib-dynload)" if parts[2] == "lib-dynload" else "stdlib"
    return "/".join(parts[:2])


def test_the_image_is_small_and_holds_the_runtime_only(built):
    with tarfile.open(built.archive) as archive:
        index = json.load(archive.extractfile("index.json"))
        blob = lambda digest: archive.extractfile("blobs/sha256/" + digest.split(":")[1])  # noqa: E731
        manifest = json.load(blob(index["manifests"][0]["digest"]))
        (layer,) = manifest["layers"]
        compressed = layer["size"] + manifest["config"]["size"]
        uncompressed, names, parts = 0, [], {}
        with tarfile.open(fileobj=gzip.GzipFile(fileobj=blob(layer["digest"]))) as rootfs:
            for member in rootfs:
                names.append(member.name.removeprefix("./"))
                uncompressed += member.size
                part = _part(member.name.removeprefix("./"))
                if part:
                    parts[part] = parts.get(part, 0) + member.size
                if member.name.removeprefix("./") == "opt/multipy/GLIBC_FLOOR":
                    floor = rootfs.extractfile(member).read().decode().strip()
    print(f"image {TAG}: {compressed / 1e6:.1f} MB compressed (gzip), {uncompressed / 1e6:.1f} MB uncompressed; "
          f"glibc floor {floor}; built with the Debian roots in {built.seconds:.0f} s")  # fmt: skip
    largest = sorted(parts.items(), key=lambda item: -item[1])[:10]
    print(f"runtime tree /opt/multipy: {sum(parts.values()) / 1e6:.1f} MB; largest: "
          + ", ".join(f"{name} {size / 1e6:.1f}" for name, size in largest))  # fmt: skip
    assert compressed <= COMPRESSED_MAX
    site = "opt/multipy/lib/python3/dist-packages/"
    stdlib = "opt/multipy/lib/python3.11/"
    for absent in ABSENT:
        where = stdlib if absent in ("lib2to3", "idlelib", "test") else site
        assert not any(n == where + absent or n.startswith(where + absent + "/") for n in names), absent
    assert re.search(rf"^glibc floor: {re.escape(floor)} ", Path(built.log).read_text(), re.M)  # the recipe's
    # Beside the tree: glibc's files (named as Debian's libc6 names them), the image's command, /etc's basics.
    glibc = {os.path.basename(p) for p in subprocess.run(["dpkg", "-L", "libc6"], capture_output=True, text=True,
                                                         check=True).stdout.split()}  # fmt: skip
    files = [n for n in names if n and not n.startswith("opt/multipy/") and n not in ("opt", "opt/multipy")]
    base = {n for n in files if n.startswith("usr/lib") and os.path.basename(n) not in ("x86_64-linux-gnu", "")}
    assert {os.path.basename(n) for n in base} - {"lib64"} <= glibc, base
    assert set(files) - base <= {"usr", "usr/lib", "usr/lib/x86_64-linux-gnu", "usr/lib64", "lib", "lib64", "etc",
                                 "etc/passwd", "etc/group", "etc/nsswitch.conf", "tmp", "root", "usr/local",
                                 "usr/local/bin", "usr/local/bin/multipy"}, set(files) - base  # fmt: skip
    assert "opt/multipy/bin/python3" in names


def test_the_daemonsets_install_runs_in_64_mib_and_a_rerun_changes_nothing(built, installs):
    first, rerun = installs["bookworm"], installs["rerun"]
    assert first.code == 0, first.err
    actions = [line.split()[0] for line in first.out.splitlines()]
    assert actions and set(actions) == {"created"}, first.out
    assert rerun.code == 0, rerun.err
    assert [line.split()[0] for line in rerun.out.splitlines()] == ["unchanged"] * len(actions), rerun.out
    root = built.roots["bookworm"]
    (digest,) = os.listdir(f"{root}/opt/multipy")
    launcher = Path(f"{root}/opt/cni/bin/multus-cni").read_text()
    assert launcher.startswith(f"#!/opt/multipy/{digest}/bin/python3 -I\n")
    assert installs["trixie"].code == 0, installs["trixie"].err
    assert "multus-shim" in os.listdir(f"{built.roots['trixie']}/opt/cni/bin")


@pytest.mark.parametrize("suite", SUITES)
def test_a_node_without_python_runs_the_installed_multus_cni(built, installs, netns, suite):
    assert installs[suite].code == 0
    root = built.roots[suite]
    # The node has neither Python nor libstdc++ (grpcio and protobuf need it): the tree brings its own.
    assert not list(Path(root, "usr/bin").glob("python*"))
    assert not list(Path(root, "usr/lib/x86_64-linux-gnu").glob("libstdc++*"))
    # The tree runs from its node path: its prefix and every import path inside it, none of the node's.
    (digest,) = os.listdir(f"{root}/opt/multipy")
    tree = f"/opt/multipy/{digest}"
    where = node.run_in(root, [f"{tree}/bin/python3", "-I", "-c", "import sys; print(sys.prefix); print(*sys.path)"], {})
    assert where.returncode == 0, where.stderr
    prefix, path = where.stdout.decode().splitlines()
    assert prefix == tree and all(p.startswith(tree + "/") for p in path.split()), where.stdout
    assert f"{tree}/lib/python3/dist-packages" in path.split()
    multus = ["/opt/cni/bin/multus-cni"]
    version = node.run_in(root, multus, {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.0.0"}')
    assert version.returncode == 0, version.stderr
    assert "1.0.0" in json.loads(version.stdout)["supportedVersions"]

    pod = netns("img")
    subprocess.run(["ip", "-n", pod, "link", "set", "lo", "down"], check=True)
    conf = json.dumps({"cniVersion": "1.0.0", "name": "image-lo", "type": "multus-cni", "cniDir": "/var/lib/cni/multipy",
                       "delegates": [{"name": "lo", "type": "loopback", "masterplugin": True}]}).encode()  # fmt: skip
    env = {"CNI_CONTAINERID": f"image-{suite}", "CNI_NETNS": f"/run/netns/{pod}", "CNI_IFNAME": "lo",
           "CNI_PATH": "/opt/cni/bin"}  # fmt: skip
    added = node.run_in(root, multus, {**env, "CNI_COMMAND": "ADD"}, conf, netns=f"/run/netns/{pod}")
    assert added.returncode == 0, added.stdout + added.stderr
    assert {ip["address"] for ip in json.loads(added.stdout)["ips"]} >= {"127.0.0.1/8"}
    assert "UP" in _lo_flags(pod)
    deleted = node.run_in(root, multus, {**env, "CNI_COMMAND": "DEL"}, conf, netns=f"/run/netns/{pod}")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert "UP" not in _lo_flags(pod)


def _lo_flags(pod: str) -> list[str]:
    out = subprocess.run(["ip", "-n", pod, "-j", "link", "show", "lo"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)[0]["flags"]


def test_an_install_onto_a_node_lacking_a_library_is_refused_and_switches_nothing(built, installs):
    refused = installs["without-libm"]
    assert refused.code != 0
    assert "libm.so.6" in refused.err and "nothing switched" in refused.err, refused.err
    root = os.path.join(built.base, "bookworm-without-libm")
    assert os.listdir(f"{root}/opt/cni/bin") == ["multus-cni"]  # no new multipy, no temporary left
    assert Path(f"{root}/opt/cni/bin/multus-cni").read_text() == "#!/bin/sh\necho the old multus-cni\n"
    assert os.listdir(f"{root}/etc/cni/net.d") == ["10-multus.conf"]  # no kubeconfig either
    assert Path(f"{root}/etc/cni/net.d/10-multus.conf").read_text() == '{"the": "old conf"}\n'
    assert os.listdir(f"{root}/etc/multipy") == []  # nor the etcd files


def test_the_images_own_command_and_the_thick_daemons_run_in_it(kit):
    # The image's CMD (`multipy --help`), and the command thick mode's daemon container runs, from the
    # image's PATH, on a read-only root with no capability: nothing but /opt/multipy and glibc needed.
    _, ds = daemonset.load("daemonset-thick.yaml")
    (daemon,) = [c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "daemon"]
    locked = ("--network", "none", *ULIMITS, "--read-only", "--read-only-tmpfs=false", "--cap-drop", "ALL")
    done = kit.podman("run", "--rm", *locked, TAG, check=False, timeout=120)
    assert done.returncode == 0 and "install" in done.stdout, done.stderr
    done = kit.podman("run", "--rm", *locked, TAG, *daemon["command"][:2], "--help", check=False, timeout=120)
    assert done.returncode == 0 and "--socket-dir" in done.stdout, done.stderr
