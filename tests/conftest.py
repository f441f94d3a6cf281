import os

import pytest

pytest_plugins = ["multipy.testing.fixtures"]


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: creates network namespaces")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)
