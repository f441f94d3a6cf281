"""What `multipy validate` checks in one file, without click.

The file is a multus conf (JSON), or NetworkAttachmentDefinitions (YAML or JSON, one or a
stream of documents) whose spec.config is a conf or conflist as a JSON string. Either way
every delegate's plugin conf, and its `ipam`, is checked against the schema its native
plugin declares. What cannot be checked (a type that runs as a binary, a native plugin
without a schema, a NAD whose conf is in confDir) is listed as not checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from multipy.cni.version import SUPPORTED_VERSIONS
from multipy.config import multus, plugin_schemas
from multipy.config.problems import Findings, Problem, child

NAD_KIND = "NetworkAttachmentDefinition"
# A NAD's conf without a cniVersion takes the multus conf's at ADD; any supported one does to check it.
_NAD_INHERITED_VERSION = SUPPORTED_VERSIONS[-1]


@dataclass
class Report(Findings):
    warnings: list[Problem] = field(default_factory=list)  # keys that do nothing here


def check(raw: bytes, schema_for: plugin_schemas.SchemaLookup) -> Report:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        documents = _yaml_documents(raw)
        if not any(_is_nad(d) for d in documents):
            return Report([Problem("$", f"not valid JSON: {exc}")])
        return _nads(documents, schema_for)
    if _is_nad(doc):
        return _nads([doc], schema_for)
    found = multus.findings(doc, schema_for=schema_for)
    return Report(found.problems, found.unchecked, multus.warnings(doc))


def _yaml_documents(raw: bytes) -> list:
    """The documents of a YAML stream; none when it is not YAML (then it was meant as JSON)."""
    import yaml

    try:
        return [d for d in yaml.safe_load_all(raw) if d is not None]
    except (yaml.YAMLError, ValueError):  # ValueError: bytes that are no text at all
        return []


def _is_nad(doc) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == NAD_KIND


def _nads(documents: list, schema_for: plugin_schemas.SchemaLookup) -> Report:
    report = Report()
    for index, doc in enumerate(documents):
        root = "$" if len(documents) == 1 else f"$[{index}]"
        if not _is_nad(doc):
            kind = doc.get("kind") if isinstance(doc, dict) else None
            report.unchecked.append(Problem(root, f"not checked: kind {kind!r} is not a {NAD_KIND}"))
            continue
        report.extend(_nad(doc, root, schema_for))
    return report


def _nad(doc: dict, root: str, schema_for: plugin_schemas.SchemaLookup) -> Findings:
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return Findings([Problem(child(root, "spec"), f"{spec!r} is not an object holding 'config'")])
    path = child(child(root, "spec"), "config")
    raw = spec.get("config")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        # As Multus: the conf named like the NAD in confDir, which is on the node, not in this file.
        why = "not checked: empty, so the conf of the NAD's name in confDir is used (validate that file)"
        return Findings(unchecked=[Problem(path, why)])
    if not isinstance(raw, str):
        return Findings([Problem(path, f"{raw!r} is not a string (the conf or conflist as JSON text)")])
    try:
        conf = json.loads(raw)
    except ValueError as exc:
        return Findings([Problem(path, f"not valid JSON: {exc}")])
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if isinstance(conf, dict) and not conf.get("name") and name:
        conf = {**conf, "name": name}  # as Multus: a conf without a name takes the NAD's
    return plugin_schemas.conf_findings(conf, path, schema_for, _NAD_INHERITED_VERSION)
