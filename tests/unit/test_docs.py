"""The docs against the code: every conf key documented, nothing documented that is gone, no dead link.

docs/configuration.md documents a key as a table row or heading that starts with the key in
backticks. Its "Top-level keys" section must hold exactly the schema's top-level properties, and
its "Delegate keys" section exactly the properties of the schema's delegate and plugin objects.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from delegates.kube_ipam import config as kube_ipam_config

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SCHEMA = ROOT / "multipy" / "config" / "schema" / "multus.schema.json"
REFERENCE = DOCS / "configuration.md"

TOP_LEVEL = "Top-level keys"
DELEGATE = "Delegate keys"

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_KEY = re.compile(r"^(?:\|\s*|#{2,6}\s+)`([^`]+)`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)


def _schema() -> dict:
    return json.loads(SCHEMA.read_text())


def _object_keys(schema: dict) -> set[str]:
    """Properties of an object schema, those of its if/then/else branches included."""
    keys = set(schema.get("properties", {}))
    for branch in ("then", "else"):
        sub = schema.get(branch) or {}
        if "$ref" not in sub:
            keys |= set(sub.get("properties", {}))
    return keys


def schema_top_level_keys() -> set[str]:
    return set(_schema()["properties"])


def schema_delegate_keys() -> set[str]:
    defs = _schema()["$defs"]
    return _object_keys(defs["delegate"]) | _object_keys(defs["plugin"])


def _without_code_blocks(text: str) -> str:
    return _FENCE.sub("", text)


def documented_keys(text: str) -> dict[tuple[str, str], set[str]]:
    """(H2 title, H3 title) -> keys documented under it ("" where there is no such heading yet)."""
    found: dict[tuple[str, str], set[str]] = {}
    h2 = h3 = ""
    for line in _without_code_blocks(text).splitlines():
        heading = _HEADING.match(line)
        if heading and len(heading.group(1)) <= 3:
            if len(heading.group(1)) == 2:
                h2, h3 = heading.group(2), ""
            elif len(heading.group(1)) == 3:
                h3 = heading.group(2)
        key = _KEY.match(line)
        if key:
            found.setdefault((h2, h3), set()).add(key.group(1))
    return found


def _section(text: str, h2: str) -> set[str]:
    return {k for (title, _), keys in documented_keys(text).items() if title == h2 for k in keys}


@pytest.fixture(scope="module")
def reference() -> str:
    return REFERENCE.read_text()


def test_every_top_level_schema_key_is_documented(reference):
    missing = schema_top_level_keys() - _section(reference, TOP_LEVEL)
    assert not missing, f"{REFERENCE.name}: top-level keys of the schema not documented: {sorted(missing)}"


def test_no_top_level_key_is_documented_that_the_schema_lacks(reference):
    stale = _section(reference, TOP_LEVEL) - schema_top_level_keys()
    assert not stale, f"{REFERENCE.name}: documented as top-level keys but not in the schema: {sorted(stale)}"


def test_every_delegate_schema_key_is_documented(reference):
    missing = schema_delegate_keys() - _section(reference, DELEGATE)
    assert not missing, f"{REFERENCE.name}: delegate keys of the schema not documented: {sorted(missing)}"


def test_no_delegate_key_is_documented_that_the_schema_lacks(reference):
    stale = _section(reference, DELEGATE) - schema_delegate_keys()
    assert not stale, f"{REFERENCE.name}: documented as delegate keys but not in the schema: {sorted(stale)}"


def test_kube_ipam_keys_are_the_ones_it_reads(reference):
    """kube-ipam refuses unknown keys, so its reference must name exactly the keys it knows."""
    section = next(keys for (h2, h3), keys in documented_keys(reference).items() if h3 == "kube-ipam")
    documented = {k for k in section if k.startswith("ipam.")}
    known = {f"ipam.{k}" for k in kube_ipam_config._IPAM_KEYS | {"ranges"}}
    known |= {f"ipam.etcdConfig.{k}" for k in kube_ipam_config._ETCD_KEYS}
    assert documented == known


def test_the_key_finder_reads_rows_and_headings_and_skips_code():
    text = "## A\n| `x` | y |\n### `z`\n```\n| `in_code` |\n```\n## B\n|`w`|\n"
    assert documented_keys(text) == {("A", ""): {"x"}, ("A", "`z`"): {"z"}, ("B", ""): {"w"}}


# -- links


def _slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' dropped, spaces as '-'."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in _without_code_blocks(path.read_text()).splitlines():
        heading = _HEADING.match(line)
        if heading:
            slug = _slug(heading.group(2))
            n, candidate = 0, slug
            while candidate in found:  # repeated headings get -1, -2, ...
                n += 1
                candidate = f"{slug}-{n}"
            found.add(candidate)
    return found


def relative_links(text: str) -> list[str]:
    text = _without_code_blocks(text)
    text = re.sub(r"`[^`\n]*`", "", text)  # a link shown as code is not a link
    targets = _LINK.findall(text) + _REF_LINK.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files_and_headings(page):
    dead = []
    for target in relative_links(page.read_text()):
        file_part, _, anchor = target.partition("#")
        file = (page.parent / file_part).resolve() if file_part else page
        if not file.exists():
            dead.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            dead.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not dead, f"{page.relative_to(ROOT)}: dead links: {dead}"


def test_the_link_finder_skips_urls_and_code():
    text = (
        '[a](docs/a.md#x) and ![b](img.png "title") [c](https://example.org/d) [e](#local)\n'
        "`[f](in-code.md)`\n```\n[g](in-block.md)\n```\n[h]: ref.md\n"
    )
    assert relative_links(text) == ["docs/a.md#x", "img.png", "#local", "ref.md"]
    assert _slug("Cleaning up leaked IPs") == "cleaning-up-leaked-ips"
    assert _slug("`ipam` keys (kube-ipam)") == "ipam-keys-kube-ipam"
