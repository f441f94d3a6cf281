"""Invoking a CNI plugin as a container runtime does: env, stdin, stdout, exit code."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

_counter = itertools.count()


def unique(prefix: str) -> str:
    """A name no other test process on this machine is using (namespaces are machine-wide)."""
    return f"{prefix}{os.getpid() % 100000}x{next(_counter)}"


def executable(name: str = "multus-cni") -> str:
    """The installed console script next to this interpreter."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.path.exists(candidate) else shutil.which(name) or name


def native(plugin_type: str, binaries: tuple[str, ...] = ()) -> list[str]:
    """argv that runs multipy's native `plugin_type` as a standalone CNI binary (its Go twin's stand-in).

    `binaries`: types it must run as binaries from CNI_PATH (e.g. the Go host-local as its IPAM).
    """
    flags = [arg for t in binaries for arg in ("--binary", t)]
    return [sys.executable, "-m", "multipy.plugins.standalone", *flags, plugin_type]


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict | None:
        return json.loads(self.stdout) if self.stdout.strip() else None

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def invoke(
    executable: str | list[str],
    command: str,
    conf: dict | bytes | str,
    *,
    container_id: str = "",
    netns: str = "",
    ifname: str = "",
    cni_args: str = "",
    cni_path: str = "/usr/lib/cni",
    host_netns: str | None = None,
    env: dict | None = None,
    timeout: float = 120,
) -> Outcome:
    """Run `executable` with CNI_COMMAND=`command`; `host_netns` runs it inside that namespace."""
    stdin = conf if isinstance(conf, bytes) else (conf.encode() if isinstance(conf, str) else json.dumps(conf).encode())
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    environ.update(env or {})
    for key, value in (
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container_id),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", ifname),
        ("CNI_ARGS", cni_args),
        ("CNI_PATH", cni_path),
    ):
        if value:
            environ[key] = value
    argv = [executable] if isinstance(executable, str) else list(executable)
    if host_netns:
        argv = ["ip", "netns", "exec", host_netns, *argv]
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=environ, timeout=timeout)
    return Outcome(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
