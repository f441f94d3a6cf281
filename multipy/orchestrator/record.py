"""The write-ahead attachment record: what was (or is being) attached to one container.

Written before any delegate runs and rewritten with each delegate's result, so
a DEL after a crash, a timeout or a partial ADD still knows every delegate and
the exact config it was given (Multus R1-R3).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from multipy.cni.errors import INVALID_ENVIRONMENT, INVALID_NETWORK_CONFIG, IO_FAILURE, CNIError
from multipy.failpoints import failpoint
from multipy.files import MIB, NAME_MAX, TEMP_OVERHEAD, read_regular, stale_temps, unlink_quietly, write_atomic

KIND = "multipyAttachmentV1"
MAX_RECORD_BYTES = MIB  # a record is a few KiB; anything larger at a record's name is not one of ours
# A record's name, and its temporary name during a write, must fit one path component.
MAX_NAME_BYTES = NAME_MAX - TEMP_OVERHEAD


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

    @staticmethod
    def _file_name(network_name: str, container_id: str, ifname: str) -> str:
        return f"{network_name}:{container_id}:{ifname}"

    def unnameable_error(self, network_name: str, container_id: str, ifname: str) -> CNIError | None:
        """Why no record can be written for this attachment, as the error ADD reports (4: the runtime's
        CNI_CONTAINERID or CNI_IFNAME is at fault, 7: the conf's network name); None when it can."""
        culprits = (("network name", network_name, INVALID_NETWORK_CONFIG),
                    ("CNI_CONTAINERID", container_id, INVALID_ENVIRONMENT),
                    ("CNI_IFNAME", ifname, INVALID_ENVIRONMENT))  # fmt: skip
        for what, value, code in culprits:
            if self._unnameable(value) is not None:
                return CNIError(code, f"invalid {what} {value!r}: no attachment record can be named after it "
                                "(empty, a leading '.', or one of '/', ':', NUL)")  # fmt: skip
        size = len(self._file_name(network_name, container_id, ifname).encode("utf-8", "surrogatepass"))
        if size > MAX_NAME_BYTES:
            what, value, code = max(culprits, key=lambda c: len(c[1].encode("utf-8", "surrogatepass")))
            return CNIError(code, f"invalid {what} ({len(value.encode('utf-8', 'surrogatepass'))} bytes): the "
                            f"attachment record's name would be {size} bytes, more than {MAX_NAME_BYTES}")
        return None

    def nameable(self, network_name: str, container_id: str, ifname: str) -> bool:
        """Whether a record could ever have been written for this attachment (ADD writes it first)."""
        return self.unnameable_error(network_name, container_id, ifname) is None

    def path(self, network_name: str, container_id: str, ifname: str) -> str:
        err = self.unnameable_error(network_name, container_id, ifname)
        if err is not None:
            raise err
        return os.path.join(self.directory, self._file_name(network_name, container_id, ifname))

    def remove_temps(self, network_name: str, container_id: str, ifname: str) -> list[str]:
        """Remove the temporary files a killed writer of this attachment's record left behind.
        Only under the attachment's lock (multipy.orchestrator.lock): then no writer is live."""
        if not self.nameable(network_name, container_id, ifname):
            return []
        leftovers = stale_temps(self.directory, self._file_name(network_name, container_id, ifname))
        for path in leftovers:
            unlink_quietly(path)
        return leftovers

    def temps_by_container(self, network_name: str) -> dict[str, list[str]]:
        """Temporary record files of `network_name`, young or old, by the container ID in their name
        (`.<network>:<containerID>:<ifname>.<pid>-<random>.tmp`): GC removes those whose container's
        lock it can take, since every writer holds that lock."""
        found: dict[str, list[str]] = {}
        for path in stale_temps(self.directory):
            entry = os.path.basename(path)[1:]  # the leading dot
            base = entry[: entry.rindex(".", 0, entry.rindex("."))]  # without ".<pid>-<random>.tmp"
            network, _, rest = base.partition(":")
            container_id = rest.partition(":")[0]
            if network == network_name and container_id:
                found.setdefault(container_id, []).append(path)
        return found

    def stale_temps(self, older_than: float) -> list[str]:
        """Temporary record files of any attachment not touched for `older_than` seconds."""
        return stale_temps(self.directory, older_than=older_than)

    def on_disk(self, network_name: str) -> set[tuple[str, str]]:
        """(containerID, ifname) of every record file of `network_name`, readable or not."""
        prefix = f"{network_name}:"
        try:
            names = os.listdir(self.directory)
        except OSError:
            return set()
        found = set()
        for name in names:
            if name.startswith(prefix):
                container_id, sep, ifname = name[len(prefix):].partition(":")
                if sep and ":" not in ifname:
                    found.add((container_id, ifname))
        return found

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

    def networks_of_container(self, container_id: str) -> bool:
        """Whether any record (any network, any ifname) of `container_id` is left."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return False
        middle = f":{container_id}:"
        return any(middle in name and not name.startswith(".") for name in names)

    def save(self, record: Record) -> None:
        final = self.path(record.network_name, record.container_id, record.ifname)
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            failpoint("record.save.before_write")
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
            raw = read_regular(path, MAX_RECORD_BYTES)  # never a FIFO, a device or a symlink's target
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CorruptRecord(f"{path}: {exc.strerror}") from exc
        try:
            record = Record.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise CorruptRecord(f"{path}: {exc}") from exc
        if (record.network_name, record.container_id, record.ifname) != (network_name, container_id, ifname):
            raise CorruptRecord(f"{path}: holds the record of another attachment")
        return record

    def remove(self, network_name: str, container_id: str, ifname: str) -> None:
        path = self.path(network_name, container_id, ifname)
        failpoint("record.remove.before_unlink")
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
                record = Record.from_json(json.loads(read_regular(os.path.join(self.directory, name), MAX_RECORD_BYTES)))
            except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
                continue
            if record.network_name == network_name:
                records.append(record)
        return records
