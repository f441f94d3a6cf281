"""A test kit for multipy and for authors of delegates: real namespaces, a runtime-like invoker.

Use it from a conftest.py with `pytest_plugins = ["multipy.testing.fixtures"]`.
Everything it creates is removed at teardown, also when a test fails.
Without root: fake_delegates.FakeDelegates scripts plugin binaries behind the Exec seam.
"""
