"""NetworkAttachmentDefinitions (k8s.cni.cncf.io/v1) as networks."""

from __future__ import annotations

import json

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.config import confdir, network
from multipy.config.problems import ConfigError


def to_network(nad: dict, ref: str, conf_dir: str, inherited_version: str) -> network.Network:
    """The network a NAD defines: its spec.config (a conf or a conflist), or, when that is empty,
    the conf of the NAD's name in confDir (as Multus does). A conf without a name takes the NAD's."""
    spec = nad.get("spec") if isinstance(nad, dict) else None
    raw = spec.get("config") if isinstance(spec, dict) else None
    name = ref.rpartition("/")[2]
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        try:
            return confdir.find(name, conf_dir, inherited_version, f"NetworkAttachmentDefinition {ref}")
        except ConfigError as err:
            raise CNIError(INVALID_NETWORK_CONFIG, f"NetworkAttachmentDefinition {ref} has no spec.config "
                                                   f"and {err.problems[0].message}") from None
    if not isinstance(raw, str):
        raise CNIError(INVALID_NETWORK_CONFIG, f"NetworkAttachmentDefinition {ref}: spec.config is not a string")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise CNIError(INVALID_NETWORK_CONFIG, f"NetworkAttachmentDefinition {ref}: spec.config is not JSON: {exc}") from None
    if isinstance(doc, dict) and not doc.get("name"):
        doc = {**doc, "name": name}
    try:
        return network.from_dict(doc, "spec.config", inherited_version)
    except ConfigError as err:
        problems = "; ".join(str(p) for p in err.problems)
        raise CNIError(INVALID_NETWORK_CONFIG, f"NetworkAttachmentDefinition {ref}: {problems}") from None
