"""install_scan.py on small trees of real ELF files built with gcc: symlinks leading out of the tree,
libraries found (or not) where the loader looks ($ORIGIN in DT_RPATH/DT_RUNPATH, the interpreter's
DT_RPATH), glibc's own libraries allowed, and the glibc floor."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from multipy.cli import install_elf, install_scan
from multipy.testing.elf_trees import FAKE_PYTHON, TREE_LIB, USES_LIBM, compile_c, newer_glibc

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The ELF files the trees are made of, compiled once."""
    out = tmp_path_factory.mktemp("elf")
    lib = compile_c(TREE_LIB, out / "libtree.so.1", shared=True, soname="libtree.so.1")
    return {
        "lib": lib,
        "python": compile_c(FAKE_PYTHON, out / "python", defines=["NEEDS_TREE_LIB"], libs=[lib], runpath="$ORIGIN/../lib"),
        "python_rpath": compile_c(FAKE_PYTHON, out / "python_rpath", rpath="$ORIGIN/../lib"),
        "python_runpath": compile_c(FAKE_PYTHON, out / "python_runpath", runpath="$ORIGIN/../lib"),
        "python_stripped": compile_c(FAKE_PYTHON, out / "python_stripped", strip=True),
        "ext": compile_c(TREE_LIB + USES_LIBM, out / "ext.so", shared=True, libs=[lib, "-lm"]),
        "ext_origin": compile_c(TREE_LIB, out / "ext_origin.so", shared=True, libs=[lib], runpath="$ORIGIN/../../../lib"),
        "ext_absolute": compile_c(TREE_LIB, out / "ext_absolute.so", shared=True, libs=[lib], rpath=str(out)),
    }


def place(tree, relative, source):
    target = tree / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    return target


def scan(tree, interpreter="bin/python3"):
    return install_scan.scan(str(tree), interpreter)


def test_a_self_contained_tree_passes(tmp_path, built):
    tree = tmp_path / "tree"
    place(tree, "bin/python3.11", built["python"])
    (tree / "bin/python3").symlink_to("python3.11")
    place(tree, "lib/libtree.so.1", built["lib"])
    place(tree, "lib/python3.11/ext/a.so", built["ext_origin"])  # $ORIGIN/../../../lib from lib/python3.11/ext
    (tree / "lib/python3.11/ext/data.py").write_text("x = 1\n")
    (tree / "lib/python3.11/ext/up").symlink_to("../../../bin")  # a directory link inside the tree
    (tree / "lib/loop1").symlink_to("loop2")  # broken, but nothing outside the tree
    (tree / "lib/loop2").symlink_to("loop1")
    found = scan(tree)
    assert found.problems == ()
    assert found.loader == "/lib64/ld-linux-x86-64.so.2"
    assert sorted(found.elf_files) == ["bin/python3.11", "lib/libtree.so.1", "lib/python3.11/ext/a.so"]
    assert found.glibc is not None and tuple(map(int, found.glibc.split("."))) >= (2, 2, 5)


def test_symlinks_leading_out_are_named(tmp_path, built):
    tree = tmp_path / "tree"
    place(tree, "bin/python3.11", built["python_stripped"])
    (tree / "bin/python3").symlink_to("/usr/bin/python3.11")  # a virtualenv's
    (tree / "lib").mkdir()
    (tree / "lib/up").symlink_to("../..")
    (tree / "lib/through").symlink_to("up/etc/passwd")  # out only through lib/up, which is named itself
    (tree / "lib/dot").symlink_to(".")
    (tree / "lib/sneaky").symlink_to("dot/../../etc")  # lexically inside, really out: lib/dot is the tree's lib
    (tree / "lib/self").symlink_to("../lib/./dot")
    found = scan(tree, "bin/python3.11")
    assert found.problems == (
        "bin/python3 -> /usr/bin/python3.11: is an absolute path",
        "lib/sneaky -> dot/../../etc: leads out of the tree",
        "lib/up -> ../..: leads out of the tree",
    )


def test_libraries_outside_the_tree_are_named_glibcs_are_not(tmp_path, built):
    tree = tmp_path / "tree"
    place(tree, "bin/python3", built["python_runpath"])
    place(tree, "lib/libtree.so.1", built["lib"])
    # No DT_RPATH/RUNPATH of its own and the interpreter's is a DT_RUNPATH, which only applies to the
    # interpreter: the loader would not look in lib/. libm.so.6 is glibc's: the node's.
    place(tree, "lib/python3.11/site-packages/ext.so", built["ext"])
    place(tree, "lib/absolute.so", built["ext_absolute"])  # a DT_RPATH naming a directory of the build host
    found = scan(tree)
    assert found.problems == (
        "lib/absolute.so needs libtree.so.1, which is neither in the tree nor glibc",
        "lib/python3.11/site-packages/ext.so needs libtree.so.1, which is neither in the tree nor glibc",
    )


def test_the_interpreters_rpath_serves_every_library(tmp_path, built):
    # An executable's DT_RPATH (not DT_RUNPATH) is searched for the libraries of everything it loads.
    tree = tmp_path / "tree"
    place(tree, "bin/python3", built["python_rpath"])
    place(tree, "lib/libtree.so.1", built["lib"])
    place(tree, "lib/python3.11/site-packages/ext.so", built["ext"])
    found = scan(tree)
    assert found.problems == () and found.library_path == ("lib",)


def test_a_library_the_interpreter_loaded_serves_every_later_one(tmp_path, built):
    # The loader reuses a loaded library of the same soname: an extension needing libpython finds the
    # interpreter's, whatever its own search path.
    tree = tmp_path / "tree"
    place(tree, "bin/python3", built["python"])  # DT_RUNPATH $ORIGIN/../lib, needs libtree.so.1
    place(tree, "lib/libtree.so.1", built["lib"])
    place(tree, "lib/python3.11/site-packages/ext.so", built["ext"])
    found = scan(tree)
    assert found.problems == () and found.library_path == ("lib",)


def test_the_glibc_floor_is_the_highest_version_needed(tmp_path, built):
    tree = tmp_path / "tree"
    place(tree, "bin/python3", built["python_stripped"])
    floor = scan(tree).glibc
    newer_glibc(built["python_stripped"], tree / "bin/newer")
    found = scan(tree)
    assert floor != "2.99" and (found.glibc, found.glibc_needed_by) == ("2.99", "bin/newer")
    assert install_elf.read(str(tree / "bin/newer")).versions["libc.so.6"] >= {"GLIBC_2.99"}


def test_glibc_is_glibcs_libraries_only():
    assert {"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1",
            "libresolv.so.2", "ld-linux-x86-64.so.2"} <= install_scan.GLIBC  # fmt: skip
    # libxcrypt on Debian 12, libstdc++ and libgcc_s are GCC's: a tree needing them must carry them.
    assert not {"libcrypt.so.1", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1"} & install_scan.GLIBC


def test_what_is_not_an_elf_executable_or_library(tmp_path, built):
    tree = tmp_path / "tree"
    place(tree, "bin/python3", built["python_stripped"])
    (tree / "lib").mkdir()
    (tree / "lib/broken.so").write_bytes(b"\x7fELF" + b"\0" * 12)  # the magic, then nothing an ELF reader can use
    (tree / "lib/tiny").write_bytes(b"\x7fE")
    (tree / "lib/script").write_text("#!/bin/sh\n")
    subprocess.run(["gcc", "-c", "-x", "c", "/dev/null", "-o", str(tree / "lib/object.o")], check=True, timeout=60)
    found = scan(tree)
    assert len(found.problems) == 1 and found.problems[0].startswith("lib/broken.so: not a readable ELF file: ")
    assert found.elf_files == ("bin/python3",)


def test_an_interpreter_that_is_no_elf_file(tmp_path):
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin/python3").write_text("#!/bin/sh\n")
    found = scan(tree)
    assert (found.problems, found.loader, found.elf_files, found.glibc) == ((), None, (), None)
