"""Scripted plugin binaries: the test side of libcni's invoke.Exec seam (multipy.plugins.binary.Exec).

Nothing is executed, so the orchestrator's ADD, rollback, DEL, CHECK, GC and STATUS run
with no root, no namespace and no plugin on disk:

    fake = FakeDelegates()
    fake.on("macvlan", "ADD", CNIError(999, "Link not found"))
    chain = fake.chain(log)                     # every type runs as one of these fakes
    ...Orchestrator(conf, chain, store, log).add(request)...
    assert fake.commands() == [("bridge", "ADD"), ("macvlan", "ADD"), ("macvlan", "DEL"), ("bridge", "DEL")]
    assert not fake.held                        # the rollback undid every ADD

By default every type succeeds: ADD prints a result in the conf's cniVersion with an interface
named CNI_IFNAME in CNI_NETNS and the next address of 10.0.0.0/8; the other commands print
nothing. `on` scripts a type's command: raise an exception, print a dict (as JSON) or bytes, or
call a function with the Call. `held` is what the fakes hold: (type, containerID, ifname) from a
successful ADD until a successful DEL. Thread-safe: concurrent requests may share one.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from multipy.cni.errors import DELEGATE_NOT_FOUND, CNIError
from multipy.cni.result import Interface, IPConfig, Result
from multipy.plugins.chain import Chain
from multipy.plugins.contract import Invocation, Services

if TYPE_CHECKING:
    from multipy.log import Log

FAKE_DIR = "/fake-cni-bin"  # the directory every fake type is "found" in
_FIRST_ADDRESS = ipaddress.ip_address("10.0.0.2")


@dataclass(frozen=True)
class Call:
    """One run of a fake: the CNI_* values and the conf it was given on stdin."""

    plugin_type: str
    command: str
    container_id: str
    netns: str
    ifname: str
    args: str
    conf: dict


# What a scripted command does: an exception is raised, a dict printed as JSON, bytes printed
# as they are, None prints nothing; a callable gets the Call and returns one of those.
Outcome = BaseException | dict | bytes | None | Callable[[Call], "Outcome"]


@dataclass
class _Script:
    outcome: Outcome
    times: int | None  # calls left; None: for good


class NoNatives:
    """A registry without native plugins: every type goes to the Exec seam."""

    def find(self, group: str, plugin_type: str) -> None:
        return None


class FakeDelegates:
    """Exec for a Chain: scripted per type and command, every call recorded."""

    def __init__(self, missing: tuple[str, ...] = ()) -> None:
        self.missing = frozenset(missing)  # types with no binary: code 100, as a runtime sees it
        self.calls: list[Call] = []
        self.held: set[tuple[str, str, str]] = set()
        self._scripts: dict[tuple[str, str], _Script] = {}
        self._next_address = 0
        self._lock = threading.Lock()

    # -- scripting and inspection --------------------------------------------------------

    def on(self, plugin_type: str, command: str, outcome: Outcome, times: int | None = None) -> None:
        """`plugin_type`'s `command` does `outcome` for the next `times` calls (None: for good)."""
        with self._lock:
            self._scripts[plugin_type, command] = _Script(outcome, times)

    def reset(self, plugin_type: str, command: str) -> None:
        """Back to the default behaviour."""
        with self._lock:
            self._scripts.pop((plugin_type, command), None)

    def commands(self, container_id: str | None = None) -> list[tuple[str, str]]:
        """(type, command) of every call so far, in order; of one container when given."""
        with self._lock:
            return [(c.plugin_type, c.command) for c in self.calls if container_id in (None, c.container_id)]

    def chain(self, log: Log, binary_types=(), services: Services | None = None, timeout: float = 5.0) -> Chain:
        """A Chain with no native plugin, every type run by this fake."""
        return Chain(NoNatives(), services or Services(), (FAKE_DIR,), timeout, log, binary_types=binary_types,
                     runner=self)  # fmt: skip

    # -- binary.Exec -------------------------------------------------------------------------

    def find(self, plugin_type: str, dirs: tuple[str, ...]) -> str:
        if plugin_type in self.missing:
            raise CNIError(DELEGATE_NOT_FOUND, f'failed to find plugin "{plugin_type}" in path [{" ".join(dirs)}]')
        return os.path.join(FAKE_DIR, plugin_type)

    def run(self, path: str, inv: Invocation, stdin: bytes, timeout: float) -> bytes:
        call = Call(os.path.basename(path), inv.command, inv.container_id, inv.netns, inv.ifname, inv.args,
                    json.loads(stdin))  # fmt: skip
        with self._lock:
            self.calls.append(call)
            outcome = self._scripted(call)
        if callable(outcome) and not isinstance(outcome, BaseException):
            outcome = outcome(call)
        if isinstance(outcome, CNIError):
            raise CNIError(outcome.code, outcome.msg, outcome.details)  # a fresh one: callers add details
        if isinstance(outcome, BaseException):
            raise outcome
        out = outcome if isinstance(outcome, bytes) else b"" if outcome is None else json.dumps(outcome).encode()
        self._account(call)
        return out

    def _scripted(self, call: Call) -> Outcome:
        script = self._scripts.get((call.plugin_type, call.command))
        if script is None:
            return self._default(call)
        if script.times is not None:
            script.times -= 1
            if script.times <= 0:
                del self._scripts[call.plugin_type, call.command]
        return script.outcome

    def _default(self, call: Call) -> Outcome:
        if call.command != "ADD":
            return None
        address = _FIRST_ADDRESS + self._next_address
        self._next_address += 1
        version = call.conf.get("cniVersion", "0.1.0")
        result = Result(version, [Interface(call.ifname, sandbox=call.netns)],
                        [IPConfig(ipaddress.ip_interface(f"{address}/8"), interface=0)])  # fmt: skip
        return result.to_json(version)

    def _account(self, call: Call) -> None:
        held = (call.plugin_type, call.container_id, call.ifname)
        with self._lock:
            if call.command == "ADD":
                self.held.add(held)
            elif call.command == "DEL":
                self.held.discard(held)
