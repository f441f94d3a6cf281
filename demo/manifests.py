"""The pods the seed's manifests make their controllers create, as the API server would hold them.

conf/db.yaml holds two StatefulSets, conf/web.yaml a Deployment. A StatefulSet names its pods
<name>-<ordinal>; a Deployment's ReplicaSet is <name>-<pod-template-hash> and its pods
<replicaset>-<5 random characters>. Both copy the template's labels and annotations onto every
pod, which is how the kube-ipam annotations reach database-1-0 and database-2-0.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Kubernetes' alphabet for generated names: no vowels (no words), no 0/1/3 (no look-alikes).
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


class ManifestError(Exception):
    """A manifest the demo cannot turn into pods; the message names the file and the field."""


@dataclass(frozen=True)
class PodTemplate:
    """One pod as its controller creates it (the API server adds the uid)."""

    name: str
    owner: str  # "statefulset/database-1"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def load(path: Path) -> list[dict]:
    try:
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    except (OSError, yaml.YAMLError) as error:
        raise ManifestError(f"{path}: {error}") from None
    for doc in docs:
        if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
            raise ManifestError(f"{path}: every document needs metadata.name, got {json.dumps(doc)[:80]}")
    return docs


def pods(path: Path) -> list[PodTemplate]:
    """The pods of every StatefulSet and Deployment in `path`, in document order."""
    made = []
    for doc in load(path):
        kind, name = doc.get("kind"), doc["metadata"]["name"]
        where = f"{path.name}: {kind} {name}"
        spec = doc.get("spec") or {}
        template = spec.get("template")
        if not isinstance(template, dict) or not isinstance(template.get("metadata"), dict):
            raise ManifestError(f"{where}: spec.template.metadata is missing (got {json.dumps(template)})")
        labels = dict(template["metadata"].get("labels") or {})
        annotations = dict(template["metadata"].get("annotations") or {})
        wanted = (spec.get("selector") or {}).get("matchLabels") or {}
        if not wanted or any(labels.get(k) != v for k, v in wanted.items()):
            # What the API server answers: `selector` does not match template `labels`.
            raise ManifestError(f"{where}: spec.selector.matchLabels {wanted} does not match the template's labels {labels}")
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or replicas < 0:
            raise ManifestError(f"{where}: spec.replicas must be a whole number >= 0, got {replicas!r}")
        if kind == "StatefulSet":
            for ordinal in range(replicas):
                pod = f"{name}-{ordinal}"
                made.append(PodTemplate(pod, f"statefulset/{name}",
                                        {**labels, "statefulset.kubernetes.io/pod-name": pod}, annotations))
        elif kind == "Deployment":
            template_hash = pod_template_hash(template)
            for _ in range(replicas):
                pod = f"{name}-{template_hash}-{''.join(secrets.choice(_SAFE) for _ in range(5))}"
                made.append(PodTemplate(pod, f"deployment/{name}", {**labels, "pod-template-hash": template_hash},
                                        annotations))
        else:
            raise ManifestError(f"{where}: only StatefulSets and Deployments create pods in this demo")
    return made


def pod_template_hash(template: dict) -> str:
    """A stable hash of the template in the form Deployments use: FNV-1a (32 bit) of the template,
    its decimal digits spelled in the safe alphabet. (The real one hashes Go's dump of the object,
    so the value differs; the shape, e.g. 5fd8684df7, is the same.)"""
    value = 0x811C9DC5
    for byte in json.dumps(template, sort_keys=True).encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[ord(digit) % len(_SAFE)] for digit in str(value))


def service(path: Path) -> tuple[dict[str, str], int]:
    """A Service's pod selector and its first port."""
    docs = [d for d in load(path) if d.get("kind") == "Service"]
    if not docs:
        raise ManifestError(f"{path}: no Service in it")
    spec = docs[0].get("spec") or {}
    ports = spec.get("ports") or [{}]
    if not spec.get("selector") or not isinstance(ports[0].get("port"), int):
        raise ManifestError(f"{path}: Service {docs[0]['metadata']['name']} needs spec.selector and spec.ports[0].port")
    return dict(spec["selector"]), ports[0]["port"]


def ingress_backend(path: Path) -> tuple[str, int]:
    """An Ingress's default backend: the Service's name and port."""
    docs = [d for d in load(path) if d.get("kind") == "Ingress"]
    if not docs:
        raise ManifestError(f"{path}: no Ingress in it")
    backend = ((docs[0].get("spec") or {}).get("defaultBackend") or {}).get("service") or {}
    name, port = backend.get("name"), (backend.get("port") or {}).get("number")
    if not name or not isinstance(port, int):
        raise ManifestError(f"{path}: Ingress {docs[0]['metadata']['name']} needs spec.defaultBackend.service.name "
                            f"and .port.number, got {json.dumps(backend)}")  # fmt: skip
    return name, port
