"""IPAM building blocks shared by the native IPAM plugins (host-local, kube-ipam).

Pure: no files, no sockets, no clock. A plugin parses its ranges and requests
with these modules, reads what its store holds, asks `allocator` which address
to take, and writes the reservation through its own store under its own lock.

    conf        the `ipam` object and its string keys, runtimeConfig
    ranges      Range, RangeSet, host-local's parsing and validation rules
    requests    requested addresses from CNI_ARGS IP, args.cni.ips, runtimeConfig.ips
    allocator   round-robin choice, requested-address placement, the reference's errors
    routes      ipam.routes
    resolv      resolv.conf text as result DNS
"""
