"""JSON-schema validation of the multus conf; the only module that imports jsonschema.

jsonschema costs ~75 ms to import, more than the rest of an ADD's Python work,
and the runtime sends the same conf for every pod. So a conf that passed once is
remembered by the hash of (schema, conf) in a stamp directory, and later calls
skip the library. A changed conf or schema changes the hash.
"""

from __future__ import annotations

import hashlib
import json
import os

from .problems import Problem, child

# A plain path, not importlib.resources: that import alone costs more than the read.
SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "schema", "multus.schema.json")


def schema_bytes() -> bytes:
    with open(SCHEMA_PATH, "rb") as f:
        return f.read()


def schema() -> dict:
    return json.loads(schema_bytes())


def problems(document: dict) -> list[Problem]:
    """Every schema violation, in document order."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    found = sorted(validator.iter_errors(document), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [problem for error in found for problem in _explain(error)]


def _explain(error) -> list[Problem]:
    """Problems in the config's words, pointing at the key itself where the library points at its parent."""
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        return [Problem(child(error.json_path, k), "unknown key") for k in error.instance if k not in known]
    if error.validator == "not" and error.validator_value == {"required": ["type"]}:
        return [Problem(error.json_path, "a conflist (with 'plugins') may not also have a 'type'")]
    return [Problem(error.json_path, error.message)]


def _stamp(document: dict, stamp_dir: str) -> str:
    digest = hashlib.sha256(schema_bytes())
    digest.update(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())
    return os.path.join(stamp_dir, digest.hexdigest())


def validate_cached(document: dict, stamp_dir: str | None) -> list[Problem]:
    """problems(document), skipping the library when this exact document passed before."""
    stamp = _stamp(document, stamp_dir) if stamp_dir else None
    if stamp and os.path.exists(stamp):
        return []
    found = problems(document)
    if not found and stamp:
        try:
            os.makedirs(stamp_dir, mode=0o700, exist_ok=True)
            with open(stamp, "x"):
                pass
        except OSError:
            pass  # a missing stamp only costs the next call some time
    return found
