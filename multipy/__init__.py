"""multipy: a Multus-style meta-CNI plugin."""

__version__ = "0.1.0"
