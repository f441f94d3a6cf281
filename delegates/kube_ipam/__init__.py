"""kube-ipam, native: cloudnativer/kube-ipam's config keys and pod annotations, done right.

Modules: config (the `ipam` keys), annotations (kube-ipam.ip/netmask/gateway),
pods (annotations from the runtime or the API), rules (pure decisions), records
(the etcd layout), store (reads and guarded transactions), reserve (read,
decide, write, retry), connect (clients, from the Services), plugin (the CNI
commands). For operators: cli (`multipy ipam`, declared in the multipy.cli
entry-point group), gc (what `multipy ipam gc` releases), node_checks (what
`multipy status` checks, through KubeIpam.status_checks), doctor (what
`multipy doctor` finds and fixes, through KubeIpam.doctor_checks: gc's rule).

Error codes beyond the config's 7: 11 when a retry can succeed (etcd or the API
unreachable, an address held by another pod or attachment, the range full);
3 when the pod is gone or the sandbox belongs to an older pod of that name (or
CHECK finds no reservation); 50 from STATUS when etcd is unreachable.
"""

from .config import SCHEMA_FILE
from .plugin import KubeIpam

# The contract's config_schema (multipy/plugins/contract.py): what an `ipam` object is checked against.
KubeIpam.config_schema = SCHEMA_FILE

__all__ = ["KubeIpam"]
