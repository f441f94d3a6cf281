"""Kubernetes for a Multus-style plugin: the pod's network selection annotations, the
NetworkAttachmentDefinitions they name, and what ADD reports back (network-status, events).

Pure parsing and formatting live beside the API-facing modules; the API client itself is
multipy.clients.kube, imported only when a request needs the API.
"""
