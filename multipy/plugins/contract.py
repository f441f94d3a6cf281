"""The contract between multipy and a native (in-process) plugin.

A native plugin is what a CNI binary would be, minus the process: it gets the
per-plugin CNI_* values and the parsed config, and returns a canonical Result
or raises CNIError. It is found by `type` in the entry-point groups below, so a
third-party package plugs in exactly as the built-ins in `delegates/` do:

    [project.entry-points."multipy.delegates"]
    mybridge = "mypkg.bridge:MyBridge"

The entry point names a factory called with the `Services` of this request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from multipy.cni.env import Environment

if TYPE_CHECKING:
    from multipy.cni.result import Result

DELEGATE_GROUP = "multipy.delegates"
IPAM_GROUP = "multipy.ipam"


# A plugin's CNI_* values: the same type the runtime's call is parsed into.
Invocation = Environment


@dataclass
class Services:
    """Clients a native plugin may use, handed in rather than made globally.

    A one-shot CNI process builds these lazily; a daemon will build them once and
    share them between requests. Unused ones cost nothing.
    """

    netlink: Any = None
    etcd: Any = None
    kube: Any = None
    # Runs an IPAM plugin (native or binary) for a main plugin: ipam(invocation, conf) -> Result | None.
    ipam: Callable[..., Any] | None = None
    # Runs another main plugin by its `type` (native or binary), as flannel runs bridge: delegate(invocation, conf).
    delegate: Callable[..., Any] | None = None


@runtime_checkable
class Plugin(Protocol):
    """One CNI plugin, in process. `conf` is the full plugin config as a runtime builds it."""

    supported_versions: tuple[str, ...]

    def add(self, inv: Invocation, conf: dict) -> Result: ...

    def delete(self, inv: Invocation, conf: dict) -> None: ...

    def check(self, inv: Invocation, conf: dict) -> None: ...

    def gc(self, inv: Invocation, conf: dict) -> None: ...

    def status(self, inv: Invocation, conf: dict) -> None: ...


PluginFactory = Callable[[Services], Plugin]
