import os

import pytest

pytest_plugins = ["multipy.testing.fixtures"]

# The fixture that creates network namespaces (node and cni_runtime build on it). A test using it,
# directly or through another fixture, is marked `netns` here, so the marker cannot be forgotten
# and tests that create no namespace are never marked.
NAMESPACE_FIXTURE = "netns"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if NAMESPACE_FIXTURE in item.fixturenames:
            item.add_marker(pytest.mark.netns)
    if os.geteuid() == 0:
        return
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs root: creates network namespaces"))
        elif (root := item.get_closest_marker("root")) is not None:
            why = root.args[0] if root.args else "needs privileges"
            item.add_marker(pytest.mark.skip(reason=f"needs root: {why}"))
