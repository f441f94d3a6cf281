"""The CNI protocol: environment, versions, results, errors and the entry skeleton.

Nothing here knows about delegates or Multus; it is the layer every CNI plugin
shares (containernetworking/cni pkg/skel and pkg/types).
"""
