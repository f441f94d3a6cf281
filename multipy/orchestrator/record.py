"""The write-ahead attachment record: what was (or is being) attached to one container.

Written before any delegate runs and rewritten with each delegate's result, so
a DEL after a crash, a timeout or a partial ADD still knows every delegate and
the exact config it was given (Multus R1-R3).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from multipy.cni.errors import IO_FAILURE, CNIError
from multipy.files import write_atomic

KIND = "multipyAttachmentV1"


@dataclass
class Attachment:
    network: dict  # the delegate's config as used, with its cniVersion
    ifname: str
    master: bool
    result: dict | None = None  # the delegate's ADD result on the wire, in its own version
    source: str = ""  # the NetworkAttachmentDefinition (namespace/name) it came from, if any
    runtime_config: dict = field(default_factory=dict)  # per-attachment capability args
    cni_args: dict = field(default_factory=dict)  # merged into each plugin conf's args.cni
    default_route: list[str] = field(default_factory=list)

    @property
    def status_name(self) -> str:
        return self.source or self.name

    @property
    def name(self) -> str:
        return self.network.get("name", "")


@dataclass
class Record:
    network_name: str  # the meta network's name
    container_id: str
    ifname: str
    netns: str = ""
    cni_args: str = ""
    capability_args: dict = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    # binaryDelegates at ADD: DEL and CHECK must reach the implementation that did the ADD.
    binary_types: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"kind": KIND, **asdict(self)}

    @classmethod
    def from_json(cls, doc: dict) -> Record:
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise ValueError(f"not a {KIND} record")
        attachments = [Attachment(**a) for a in doc["attachments"]]
        fields = {k: doc[k] for k in ("network_name", "container_id", "ifname", "netns", "cni_args", "capability_args")}
        return cls(**fields, attachments=attachments, binary_types=list(doc.get("binary_types", [])))


class CorruptRecord(Exception):
    pass


class RecordStore:
    """Records as files `<dir>/<network>:<containerID>:<ifname>`, one per attachment."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    @staticmethod
    def _unnameable(*parts: str) -> str | None:
        # ':' appears in none of the three (CNI name and ID patterns, ifname rules), so
        # unlike libcni's '-' it cannot make two attachments share a file.
        return next((p for p in parts if not p or p[0] == "." or any(ch in p for ch in "/:\0")), None)

    def nameable(self, network_name: str, container_id: str, ifname: str) -> bool:
        """Whether a record could ever have been written for this attachment (ADD writes it first)."""
        return self._unnameable(network_name, container_id, ifname) is None

    def path(self, network_name: str, container_id: str, ifname: str) -> str:
        bad = self._unnameable(network_name, container_id, ifname)
        if bad is not None:
            raise CNIError(IO_FAILURE, f"cannot name an attachment record after {bad!r}")
        return os.path.join(self.directory, f"{network_name}:{container_id}:{ifname}")

    def networks_of(self, container_id: str, ifname: str) -> list[str]:
        """The meta networks holding a record of (container_id, ifname): what a DEL whose conf
        names no usable network can still find."""
        if self._unnameable(container_id, ifname) is not None:
            return []
        suffix = f":{container_id}:{ifname}"
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        networks = (n[: -len(suffix)] for n in names if n.endswith(suffix))
        return sorted(n for n in networks if self._unnameable(n) is None)

    def save(self, record: Record) -> None:
        final = self.path(record.network_name, record.container_id, record.ifname)
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            # The temp file's leading dot: no network name starts with one, so all() skips it.
            write_atomic(final, json.dumps(record.to_json()).encode(), mode=0o600, tmp_prefix=".")
        except OSError as exc:
            raise CNIError(IO_FAILURE, f"cannot write attachment record {final}: {exc.strerror}") from exc

    def exists(self, network_name: str, container_id: str, ifname: str) -> bool:
        """A record is there, readable or not (an unfinished ADD leaves one either way)."""
        return os.path.lexists(self.path(network_name, container_id, ifname))

    def load(self, network_name: str, container_id: str, ifname: str) -> Record | None:
        """The record, None when there is none; CorruptRecord when it cannot be trusted."""
        path = self.path(network_name, container_id, ifname)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CorruptRecord(f"{path}: {exc.strerror}") from exc
        try:
            record = Record.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptRecord(f"{path}: {exc}") from exc
        if (record.network_name, record.container_id, record.ifname) != (network_name, container_id, ifname):
            raise CorruptRecord(f"{path}: holds the record of another attachment")
        return record

    def remove(self, network_name: str, container_id: str, ifname: str) -> None:
        path = self.path(network_name, container_id, ifname)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise CNIError(IO_FAILURE, f"cannot remove attachment record {path}: {exc.strerror}") from exc

    def all(self, network_name: str) -> list[Record]:
        """Every readable record of one meta network (GC's view of what is attached)."""
        prefix = f"{network_name}:"
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        records = []
        for name in sorted(names):
            if not name.startswith(prefix):
                continue
            try:
                with open(os.path.join(self.directory, name), "rb") as f:
                    record = Record.from_json(json.loads(f.read()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if record.network_name == network_name:
                records.append(record)
        return records
