"""multipy/files.py: temporary names unique per call, so threads never share one."""

from __future__ import annotations

import os
import threading

import pytest

from multipy import files


def test_write_temp_names_are_unique_across_threads(tmp_path):
    made: list[str] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        for i in range(25):
            path = files.write_temp(str(tmp_path), "record", f"{n}-{i}".encode(), sync=False)
            with lock:
                made.append(path)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == len(made) == 200
    assert all(os.path.basename(p).startswith(f".record.{os.getpid()}-") and p.endswith(".tmp") for p in made)


def test_a_leftover_under_the_same_name_is_never_overwritten(tmp_path, monkeypatch):
    randoms = iter([b"\x00" * 6, b"\x00" * 6, b"\x01" * 6])
    monkeypatch.setattr(files.os, "urandom", lambda n: next(randoms))
    first = files.write_temp(str(tmp_path), "x", b"first", sync=False)
    second = files.write_temp(str(tmp_path), "x", b"second", sync=False)  # the first name is taken: O_EXCL
    assert first != second
    assert open(first, "rb").read() == b"first" and open(second, "rb").read() == b"second"


def test_write_temp_gives_up_when_every_name_is_taken(tmp_path, monkeypatch):
    monkeypatch.setattr(files.os, "urandom", lambda n: b"\x00" * n)
    files.write_temp(str(tmp_path), "x", b"leftover", sync=False)
    with pytest.raises(FileExistsError):
        files.write_temp(str(tmp_path), "x", b"new", sync=False)


def test_concurrent_atomic_writes_publish_one_whole_content(tmp_path):
    target = tmp_path / "record"
    contents = [bytes([65 + n]) * 100_000 for n in range(8)]
    threads = [threading.Thread(target=files.write_atomic, args=(str(target), c), kwargs={"durable": False})
               for c in contents]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in contents
    assert os.listdir(tmp_path) == ["record"]
