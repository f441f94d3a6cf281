"""The layer rules that imports alone cannot show.

import-linter (`make lint`, part of `make test`) checks who imports whom. This checks
the other half of "pyroute2 only in multipy/net": no netlink vocabulary of pyroute2's
(attribute names, message methods, its classes) is spoken outside that package either,
so a delegate cannot lean on a pyroute2 object handed through by mistake.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CODE = ("multipy", "delegates", "bench", "demo", "examples")
# pyroute2's names: netlink attribute constants, nlmsg accessors, its classes and verbs.
VOCABULARY = re.compile(
    r"\b(IFLA_\w+|IFA_\w+|RTA_\w+|NDA_\w+|get_attr|get_attrs|IPRoute|NetlinkError|link_lookup|brport)\b"
    r"|\.(link|addr|route)\(\s*[\"'](add|set|del|get|append|replace|dump)[\"']"
)


def _sources():
    for top in CODE:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if rel.parts[:2] != ("multipy", "net"):
                yield rel, path


def test_no_pyroute2_vocabulary_outside_multipy_net():
    found = [
        f"{rel}:{n}: {line.strip()}"
        for rel, path in _sources()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if VOCABULARY.search(line) and not line.lstrip().startswith("#")
    ]
    assert found == []


def test_the_import_contracts_hold():
    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[lint]')")
    out = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
