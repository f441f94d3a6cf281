"""multipy/cli/install_runtime.py on small trees: what the digest covers, the copy (symlinks, modes,
mtimes, read-only directories), skipping a tree already there, leftovers, and what prune keeps."""

from __future__ import annotations

import os
import stat
import time

import pytest

from multipy.cli import install_runtime
from multipy.cli.install_files import launcher
from multipy.cli.install_runtime import SourceError


@pytest.fixture
def tree(tmp_path):
    """A small runtime: bin/python3 -> python3.11 (relative symlink), a module, a read-only directory."""
    root = tmp_path / "src"
    (root / "bin").mkdir(parents=True)
    (root / "bin/python3.11").write_bytes(b"\x7fELF interpreter")
    (root / "bin/python3.11").chmod(0o755)
    (root / "bin/python3").symlink_to("python3.11")
    (root / "lib/site-packages/multipy").mkdir(parents=True)
    (root / "lib/site-packages/multipy/__init__.py").write_text("__version__ = '0.1.0'\n")
    (root / "share").mkdir()
    (root / "share/data.txt").write_text("data\n")
    (root / "share").chmod(0o555)
    yield root
    for directory, _, _ in os.walk(tmp_path):
        os.chmod(directory, 0o755)  # so that tmp_path can be removed


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_digest_covers_paths_modes_links_and_bytes_not_times(tree):
    first = install_runtime.digest(str(tree))
    assert len(first) == 32 and first == install_runtime.digest(str(tree))
    module = tree / "lib/site-packages/multipy/__init__.py"
    os.utime(module, (1, 1))
    assert install_runtime.digest(str(tree)) == first  # a rebuilt image with the same content: same tree

    seen = {first}

    def changed() -> str:
        digest = install_runtime.digest(str(tree))
        assert digest not in seen
        seen.add(digest)
        return digest

    module.chmod(0o600)
    changed()
    module.write_text("__version__ = '0.1.1'\n")
    changed()
    (tree / "bin/python3").unlink()
    (tree / "bin/python3").symlink_to("python3.11 ")
    changed()
    os.rename(tree / "lib/site-packages/multipy/__init__.py", tree / "lib/site-packages/multipy/__init__.pyc")
    changed()
    (tree / "lib/empty").mkdir()
    changed()


def test_install_copies_the_tree_faithfully_once(tree, tmp_path):
    digest = install_runtime.digest(str(tree))
    root = tmp_path / "node/opt/multipy"
    assert install_runtime.install(str(tree), str(root), digest) == "created"
    copy = root / digest
    assert os.listdir(root) == [digest]  # no temporary directory left
    assert os.readlink(copy / "bin/python3") == "python3.11"  # a symlink stays a symlink
    assert (copy / "bin/python3.11").read_bytes() == b"\x7fELF interpreter"
    assert mode(copy / "bin/python3.11") == 0o755 and mode(copy / "share") == 0o555
    module = "lib/site-packages/multipy/__init__.py"
    assert os.stat(copy / module).st_mtime_ns == os.stat(tree / module).st_mtime_ns  # bytecode stays valid
    assert install_runtime.digest(str(copy)) == digest

    inode = os.stat(copy).st_ino
    assert install_runtime.install(str(tree), str(root), digest) == "unchanged"
    assert os.stat(copy).st_ino == inode


def test_set_id_bits_are_not_copied(tree, tmp_path):
    (tree / "bin/python3.11").chmod(0o4755)
    digest = install_runtime.digest(str(tree))
    install_runtime.install(str(tree), str(tmp_path / "rt"), digest)
    assert mode(tmp_path / "rt" / digest / "bin/python3.11") == 0o755


def test_what_a_tree_cannot_hold(tree, tmp_path):
    os.mkfifo(tree / "lib/fifo")
    with pytest.raises(SourceError, match=r"--runtime .*/src: lib/fifo is not a file, directory or symlink"):
        install_runtime.digest(str(tree))
    with pytest.raises(SourceError, match="not a directory"):
        install_runtime.digest(str(tree / "share/data.txt"))


def test_a_tree_changed_while_copied_is_refused_and_leaves_nothing(tree, tmp_path):
    root = tmp_path / "rt"
    with pytest.raises(SourceError, match="changed while it was being copied"):
        install_runtime.install(str(tree), str(root), "0" * 32)
    assert os.listdir(root) == []


def test_leftovers_of_a_killed_install_are_removed_when_old(tree, tmp_path):
    root = tmp_path / "rt"
    old, recent = root / f".{'a' * 32}.x1.tmp", root / f".{'b' * 32}.x2.tmp"
    for path in (old, recent):
        (path / "lib").mkdir(parents=True)
        (path / "lib").chmod(0o555)
    past = time.time() - install_runtime.LEFTOVER_AGE - 60
    os.utime(old, (past, past))
    digest = install_runtime.digest(str(tree))
    install_runtime.install(str(tree), str(root), digest)
    assert sorted(os.listdir(root)) == sorted([recent.name, digest])  # a recent one may be another install's


def test_the_interpreter_is_found_or_named(tree, tmp_path):
    assert install_runtime.interpreter(str(tree), None) == "bin/python3"
    assert install_runtime.interpreter(str(tree), "bin/./python3.11") == "bin/python3.11"
    standalone = tmp_path / "standalone"
    (standalone / "python/bin").mkdir(parents=True)
    (standalone / "python/bin/python3").touch()
    assert install_runtime.interpreter(str(standalone), None) == "python/bin/python3"
    with pytest.raises(SourceError, match=r"no interpreter at bin/python3, bin/python, python/bin/python3; name it"):
        install_runtime.interpreter(str(tree / "lib"), None)
    with pytest.raises(SourceError, match=r"--python '/usr/bin/python3': with --runtime, a path inside"):
        install_runtime.interpreter(str(tree), "/usr/bin/python3")
    with pytest.raises(SourceError, match=r"--python '../python3': with --runtime"):
        install_runtime.interpreter(str(tree), "../python3")
    with pytest.raises(SourceError, match=r"--python 'bin/python4': there is no bin/python4 in"):
        install_runtime.interpreter(str(tree), "bin/python4")


def test_prune_keeps_what_a_launcher_names(tmp_path):
    bin_dir, root = tmp_path / "bin", tmp_path / "rt"
    bin_dir.mkdir()
    used, quoted, unused, current = "1" * 32, "2" * 32, "3" * 32, "4" * 32
    for name in (used, quoted, unused, current, "notes", "5" * 31):
        (root / name / "bin").mkdir(parents=True)
    (root / unused / "bin").chmod(0o555)  # removed all the same
    (bin_dir / "multus-cni").write_bytes(launcher("multus-cni", "multipy.entry", f"/opt/multipy/{used}/bin/python3"))
    # A path a #! line cannot hold goes through sh, quoted: still found.
    (bin_dir / "old").write_bytes(launcher("old", "multipy.entry", f"/opt/multipy/{quoted}/bin/py thon3"))
    (bin_dir / "bridge").write_bytes(b"\x7fELF /opt/multipy/" + unused.encode())  # not a script
    assert install_runtime.referenced(str(bin_dir), "/opt/multipy") == {used, quoted}
    assert install_runtime.referenced(str(bin_dir), "/opt/other") == set()
    assert install_runtime.prune(str(root), {used, quoted, current}) == [unused]
    assert sorted(os.listdir(root)) == sorted([used, quoted, current, "notes", "5" * 31])
    assert install_runtime.prune(str(tmp_path / "missing"), set()) == []
