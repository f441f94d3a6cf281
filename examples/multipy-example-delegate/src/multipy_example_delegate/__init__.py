"""An example third-party multipy delegate, type `example-dummy`.

It gives the pod a Linux `dummy` link named CNI_IFNAME holding the conf's `address`.
Registered in pyproject.toml under the `multipy.delegates` entry-point group.
"""

__version__ = "0.1.0"
