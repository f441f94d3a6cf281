"""JSON-schema validation of confs; the only module that imports jsonschema.

Two kinds of schema are checked here: the multus conf's own (schema/multus.schema.json)
and the schema each native plugin declares for its conf (`config_schema`, see
multipy/plugins/contract.py), which the caller hands in as a `Target`.

jsonschema costs ~75 ms to import, more than the rest of an ADD's Python work,
and the runtime sends the same conf for every pod. So targets that passed once
are remembered by the hash of their schemas and documents in a stamp directory,
and later calls skip the library. A changed conf or schema changes the hash.

Messages speak the conf's words: a key the schema refuses is "unknown key" at
that key's path, a format is named ("is not an IPv4 address"), and a schema may
word its own failure with the `errorMessage` keyword (as ajv-errors does),
appended to the value: {"errorMessage": "is not a valid interface name"}.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from dataclasses import dataclass

from .problems import Problem, child

# A plain path, not importlib.resources: that import alone costs more than the read.
SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "schema", "multus.schema.json")


@dataclass(frozen=True)
class Target:
    """One document to check against one schema; problems are reported under `path`."""

    schema: dict
    document: object
    path: str = "$"


def schema_bytes() -> bytes:
    with open(SCHEMA_PATH, "rb") as f:
        return f.read()


def schema() -> dict:
    return json.loads(schema_bytes())


def multus_target(document: dict) -> Target:
    return Target(schema(), document)


def network_target(document, path: str) -> Target:
    """A network conf or conflist on its own (a NAD's spec.config), checked as a delegate of the multus conf."""
    defs = schema()["$defs"]
    return Target({"$ref": "#/$defs/delegate", "$defs": defs}, document, path)


# -- formats a plugin schema may name. Go's net.ParseIP/ParseCIDR/ParseMAC decide what a
# delegate accepts, so these follow them: no zone, no prefix on an address, and an
# IPv4-mapped IPv6 address is IPv4 (To4() is not nil). Non-strings pass: `type` says that.

_MAC_COLON = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$")
_MAC_DOTTED = re.compile(r"^[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}$")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in text or "/" in text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped is not None else ip


def _is_ipv4(value) -> bool:
    return not isinstance(value, str) or getattr(_address(value), "version", 0) == 4


def _is_ipv6(value) -> bool:
    return not isinstance(value, str) or getattr(_address(value), "version", 0) == 6


def _is_ip(value) -> bool:
    return not isinstance(value, str) or _address(value) is not None


def _is_cidr(value) -> bool:
    if not isinstance(value, str):
        return True
    addr, _, prefix = value.partition("/")
    if not (prefix.isascii() and prefix.isdigit()) or _address(addr) is None:
        return False
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        return False
    return True


def _is_mac(value) -> bool:
    return not isinstance(value, str) or bool(_MAC_COLON.match(value) or _MAC_DOTTED.match(value))


# format name -> (check, what the value is not), e.g. "'x' is not an IPv4 address"
FORMATS = {
    "ipv4": (_is_ipv4, "an IPv4 address"),
    "ipv6": (_is_ipv6, "an IPv6 address"),
    "ip": (_is_ip, "an IP address"),
    "cidr": (_is_cidr, 'an address with a prefix length (CIDR notation, such as "10.1.2.0/24")'),
    "mac": (_is_mac, "a MAC address (6 hex octets such as 02:42:ac:11:00:02)"),
}


def _format_checker():
    import jsonschema

    checker = jsonschema.FormatChecker()  # the library's formats, with ours in place of its ipv4/ipv6
    for name, (check, _) in FORMATS.items():
        checker.checks(name)(check)
    return checker


# -- checking


def problems(target: Target) -> list[Problem]:
    """Every schema violation, in document order."""
    import jsonschema
    from referencing.exceptions import Unresolvable

    try:
        jsonschema.Draft202012Validator.check_schema(target.schema)
        validator = jsonschema.Draft202012Validator(target.schema, format_checker=_format_checker())
        errors = list(validator.iter_errors(target.document))
    except (jsonschema.SchemaError, Unresolvable) as exc:
        # A third-party plugin's broken schema must name itself, not crash the check.
        reason = getattr(exc, "message", None) or str(exc)
        return [Problem(target.path, f"cannot be checked: the schema its plugin declares is invalid: {reason}")]
    errors.sort(key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [problem for error in errors for problem in _explain(error, target.path)]


def _at(base: str, json_path: str) -> str:
    """The library's path ("$.ipam.subnet", relative to the document) under the document's own."""
    return base + json_path[1:]


def _clip(text: str, limit: int = 200) -> str:
    """A problem quotes the value at fault, never a megabyte of it."""
    return text if len(text) <= limit else f"{text[: limit - 40]}...({len(text)} characters)...{text[-20:]}"


def _explain(error, base: str) -> list[Problem]:
    """Problems in the config's words, pointing at the key itself where the library points at its parent."""
    path = _at(base, error.json_path)
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        return [Problem(child(path, k), "unknown key") for k in error.instance if k not in known]
    if error.validator == "not" and error.validator_value == {"required": ["type"]}:
        return [Problem(path, "a conflist (with 'plugins') may not also have a 'type'")]
    if isinstance(error.schema, dict) and isinstance(error.schema.get("errorMessage"), str):
        return [Problem(path, f"{_clip(repr(error.instance))} {error.schema['errorMessage']}")]
    if error.validator == "format" and error.validator_value in FORMATS:
        return [Problem(path, f"{_clip(repr(error.instance))} is not {FORMATS[error.validator_value][1]}")]
    if error.validator in ("maxLength", "pattern") and isinstance(error.instance, str):
        return [Problem(path, _clip(f"{error.instance!r}", 80) + f" does not match {error.validator} {error.validator_value!r}")]
    return [Problem(path, _clip(error.message, 400))]


def _stamp(targets: list[Target], stamp_dir: str) -> str:
    digest = hashlib.sha256()
    for target in targets:
        # The path is part of what passed: the same document elsewhere was not checked there.
        digest.update(json.dumps([target.path, target.schema, target.document], sort_keys=True,
                                 separators=(",", ":")).encode())  # fmt: skip
    return os.path.join(stamp_dir, digest.hexdigest())


def validate_cached(targets: list[Target], stamp_dir: str | None) -> list[Problem]:
    """Every target's problems, skipping the library when these exact targets passed before."""
    if not targets:
        return []
    stamp = _stamp(targets, stamp_dir) if stamp_dir else None
    if stamp and os.path.exists(stamp):
        return []
    found = [problem for target in targets for problem in problems(target)]
    if not found and stamp:
        try:
            os.makedirs(stamp_dir, mode=0o700, exist_ok=True)
            with open(stamp, "x"):
                pass
        except OSError:
            pass  # a missing stamp only costs the next call some time
    return found
