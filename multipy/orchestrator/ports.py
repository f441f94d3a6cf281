"""What the orchestrator asks of the cluster, as Protocols it is handed (never imports).

The orchestrator knows nothing of Kubernetes: multipy.k8s implements these ports above it
and entry.py wires them in, so the core runs, and is tested, with no API at all. They are
used by ADD only; DEL, CHECK, GC and STATUS work from the record and the conf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .plan import Wanted
from .record import Record


@dataclass(frozen=True)
class PodSelection:
    """The networks the cluster gives one pod."""

    pod: Any  # the cluster's handle on the pod: opaque here, handed back to the Reporter as is
    wanted: list[Wanted]


class PodNetworks(Protocol):
    def select(self, cni_args: str) -> PodSelection | None:
        """The networks of the pod CNI_ARGS names; None when it names no pod (not a Kubernetes
        request: the conf's own delegates apply). Raises CNIError when the pod cannot be wired."""
        ...


class Reporter(Protocol):
    def network_status(self, pod: Any, record: Record, netns: str) -> object:
        """Publish what the pod got; raising CNIError rolls the ADD back."""
        ...

    def added_interfaces(self, pod: Any, record: Record) -> None:
        """Best effort, after the ADD succeeded: never raises."""
        ...
