"""multipy's built-in native delegates.

Each registers under the `multipy.delegates` (or `multipy.ipam`) entry-point
group in pyproject.toml, exactly as a third-party delegate package would.
"""
