"""What a plugin package may offer operators besides the CNI commands: declared, optional, and
reached by multipy's CLI without importing the plugin's modules by name.

- **Subcommands.** A click command (usually a group) named in the `multipy.cli` entry-point group
  becomes `multipy <name>` (kube-ipam's `ipam = "delegates.kube_ipam.cli:ipam"`). It lives in the
  package's own cli module, the only module of the package that imports click, and is imported
  only when it runs or `multipy --help` lists it. A built-in command keeps its name.
- **Node checks.** A `status_checks(conf, probe)` attribute of a plugin's factory (a staticmethod
  on the class) adds lines to `multipy status`. It is called for every plugin of the conf whose
  `type` (or `ipam.type`) resolves to that factory, with the plugin's conf as a runtime would hand
  it over, and returns `Check`s. It never raises: what fails is a Check with ok=False whose detail
  names the file, key or endpoint at fault, and never a credential.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .contract import EtcdFactory, KubeFactory


@dataclass(frozen=True)
class Check:
    """One line of `multipy status`."""

    kind: str  # what sort of fact: conf, type, etcd, api, subnet.env, readiness, ...
    subject: str  # what was checked: a file, "k8snet2: macvlan", an endpoint list
    ok: bool
    detail: str
    extra: dict = field(default_factory=dict, compare=False)  # more for -o json (a conf's problems)

    def as_dict(self) -> dict:
        return {"check": self.kind, "subject": self.subject, "ok": self.ok, "detail": self.detail, **self.extra}


class StatusProbe(Protocol):
    """What `multipy status` hands a plugin's status_checks for one run."""

    timeout: float  # seconds one probe of a service may take
    etcd: EtcdFactory  # clients made through these are closed by the run
    kube: KubeFactory

    def first(self, key: Hashable) -> bool:
        """True the first time `key` is given in this run: a store several networks share is checked once."""
        ...

    def api(self, kubeconfig: str, named_by: str) -> Check | None:
        """The Kubernetes API check for `kubeconfig` ("": the in-cluster service account), the same as
        for the conf's own kubeconfig; None when that kubeconfig was already checked in this run."""
        ...


StatusChecks = Callable[[dict, StatusProbe], Iterable[Check]]


# -- multipy doctor ---------------------------------------------------------------------------------
#
# A `doctor_checks(conf, probe)` attribute of a plugin's factory (a staticmethod, as status_checks)
# lets `multipy doctor` find what that plugin holds on the node for attachments no record owns: a
# host-local lease, a kube-ipam owner in etcd. It is called once per plugin conf of the multus conf
# (its `ipam` handed over as a runtime would), returns Findings, never raises, and removes a finding
# only when `probe.fix` is set and `probe.removable(container_id)` says so.


@dataclass(frozen=True)
class Finding:
    """One leftover `multipy doctor` found: what kind, which thing, why it looks stale, and whether it
    was removed (--fix) or could be."""

    kind: str  # record-without-netns, unreadable-record, temp-file, orphan-link, lease-without-record, ...
    subject: str  # a path, "<netns>: <link>", "<network> <ip>", an etcd key
    detail: str
    fixable: bool = False  # provably stale: --fix removes it
    fixed: bool = False

    def as_dict(self) -> dict:
        return {"kind": self.kind, "subject": self.subject, "detail": self.detail, "fixable": self.fixable,
                "fixed": self.fixed}  # fmt: skip


class DoctorProbe(Protocol):
    """What `multipy doctor` hands a plugin's doctor_checks."""

    fix: bool  # remove what is provably stale
    timeout: float
    etcd: EtcdFactory
    kube: KubeFactory

    def owned(self, container_id: str, ifname: str) -> bool:
        """A record (readable or not) may own this attachment: leave it alone."""
        ...

    def removable(self, container_id: str) -> bool:
        """No record of this container exists at all (any network, ifname, readable or not), and no
        request for it is in flight: what it holds is provably stale."""
        ...


DoctorChecks = Callable[[dict, DoctorProbe], Iterable[Finding]]
