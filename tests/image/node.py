"""Debian roots standing for nodes without Python, and running a node's CNI executable inside one.

A root is mmdebstrap's `essential` variant: the packages every Debian system has (dpkg, coreutils,
glibc...), no apt, so no libstdc++ and no Python: whatever multipy needs beyond glibc must come
with its runtime tree. mmdebstrap runs in a mount namespace of its own, so the mounts it makes in
the root never outlive it, even when it is killed.
"""

from __future__ import annotations

import os
import subprocess

MIRROR = os.environ.get("MIRROR", "http://deb.debian.org/debian")  # as conf/image/build-image.sh
EXCLUDED = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")


def mmdebstrap_argv(suite: str, target: str) -> list[str]:
    return ["unshare", "--mount", "--propagation", "private", "mmdebstrap", "--quiet", "--variant=essential",
            *(f"--dpkgopt=path-exclude={p}" for p in EXCLUDED), suite, target, f"deb {MIRROR} {suite} main"]  # fmt: skip


# In a private mount namespace: /proc (the loader finds the interpreter's $ORIGIN through
# /proc/self/exe, as on any node) and, when given, the pod's netns file bound at its own path in
# the root (`ip netns` keeps it under /run/netns on this machine); both gone with the command.
_ENTER = """set -e
root=$1 netns=$2; shift 2
mount -t proc proc "$root/proc"
if [ -n "$netns" ]; then
    mkdir -p "$root$(dirname "$netns")" && touch "$root$netns" && mount --bind "$netns" "$root$netns"
fi
exec chroot "$root" "$@"
"""


def run_in(root: str, argv: list[str], env: dict[str, str], stdin: bytes = b"", netns: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:  # fmt: skip
    """`argv` chrooted into `root`, as the node's container runtime would run it there."""
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", _ENTER, "sh", root,
                           netns or "", *argv], input=stdin, capture_output=True, env=env, timeout=timeout)  # fmt: skip
    if netns:  # the mount point the bind mount was on (the mount itself went with the namespace)
        try:
            os.unlink(root + netns)
        except FileNotFoundError:
            pass
    return done
