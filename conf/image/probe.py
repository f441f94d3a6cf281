"""Imports everything multipy can import, run by the runtime tree's own interpreter (-I); prints JSON.

"Everything": every module of the packages `multipy` and `delegates` (but the test kit,
multipy.testing), every absolute module any of their files imports, at the top or inside a function
(parsed, so late imports count), and every entry point multipy looks up. What it prints (the
top-level packages and the stdlib extension modules that got loaded) tells the build what the tree
must keep; a failed import is a tree that misses something.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import os
import pkgutil
import sys

PACKAGES = ("multipy", "delegates")
SKIP = ("multipy.testing",)  # the test kit: pytest, containerd stubs; never run on a node
GROUPS = ("multipy.delegates", "multipy.ipam", "multipy.cli")


def _skipped(name: str) -> bool:
    return any(name == s or name.startswith(s + ".") for s in SKIP)


def imported_names(directory: str, skipped: set[str]) -> set[str]:
    """Absolute module names the .py files under `directory` (but the directories `skipped`) import,
    anywhere in them."""
    names = set()
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in skipped]
        for name in files:
            if not name.endswith(".py"):
                continue
            with open(os.path.join(root, name), "rb") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module)
    return names


def main() -> int:
    failures = {}
    wanted = set()
    for package in PACKAGES:
        module = importlib.import_module(package)
        for location in module.__path__:
            skipped = {os.path.join(location, *s.split(".")[1:]) for s in SKIP if s.startswith(package + ".")}
            wanted |= {n for n in imported_names(location, skipped) if not _skipped(n)}
        wanted |= {m.name for m in pkgutil.walk_packages(module.__path__, package + ".") if not _skipped(m.name)}
    for name in sorted(wanted):
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - every failure is reported, none stops the probe
            failures[name] = f"{type(error).__name__}: {error}"
    entry_points = 0
    for group in GROUPS:
        for entry in importlib.metadata.entry_points(group=group):
            try:
                entry.load()
                entry_points += 1
            except Exception as error:  # noqa: BLE001
                failures[f"{group}:{entry.name}"] = f"{type(error).__name__}: {error}"
    dynload = os.path.join(os.path.dirname(os.__file__), "lib-dynload")
    extensions = sorted(name for name, module in list(sys.modules.items())
                        if (getattr(module, "__file__", None) or "").startswith(dynload + "/"))  # fmt: skip
    json.dump({"imported": sorted({name.partition(".")[0] for name in sys.modules}), "extensions": extensions,
               "modules": len(wanted), "entry_points": entry_points, "failures": failures}, sys.stdout)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
