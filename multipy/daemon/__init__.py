"""`multipy daemon`: thick mode's long-lived process behind the `multus-shim` executable.

It serves HTTP/1.1 on a unix socket (one request per connection): POST /cni runs a CNI request as the
thin `multus-cni` would, with the registry, clients and the API caches kept warm; POST /delegate
hot-plugs one network into a running pod; GET /healthz, /readyz and /metrics for probes and
Prometheus (also on an optional loopback TCP address).

    settings.py  the daemon's own config file and options, re-read when the file changes
    server.py    the unix socket: a bounded worker pool, netns fds passed with SCM_RIGHTS
    routes.py    the endpoints, and CNI error codes as HTTP statuses
    hotplug.py   POST /delegate's wiring over orchestrator/hotplug.py
    cluster.py   the pod and NAD informers, and the API client that reads them first
    metrics.py   the only prometheus_client user
    main.py      start, reload, SIGTERM drain
"""
