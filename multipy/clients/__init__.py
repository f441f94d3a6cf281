"""Clients for the services native plugins use: etcd (`etcd.py`) and the Kubernetes API (`kube.py`),
and `pool.py`, which shares them by key between the requests of one process.

Each client module is the only importer of its heavy library, and imports it only when a client is
built. Every failure leaves a module as one of a few typed exceptions, so callers can turn them into
CNI errors.
"""
