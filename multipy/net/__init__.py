"""Kernel networking for native plugins: netlink (pyroute2), sysctls, namespaces, interface setup."""
