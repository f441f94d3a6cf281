"""delegates.host_local.store: the Go plugin's file layout, written so that it is never half there."""

from __future__ import annotations

import errno
import os
import stat
from ipaddress import ip_address

import pytest

from delegates.host_local import store as store_module
from delegates.host_local.store import DiskStore, Owner
from multipy.cni.errors import TRY_AGAIN_LATER, CNIError


@pytest.fixture
def store(tmp_path):
    return DiskStore(str(tmp_path / "net"))


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_reserve_writes_what_go_writes(store, tmp_path):
    with store.locked():
        assert store.reserve(ip_address("10.1.2.3"), Owner("c1", "eth0"), 0)
        assert store.reserve(ip_address("fd00::3"), Owner("c1", "eth0"), 1)
        assert not store.reserve(ip_address("10.1.2.3"), Owner("c2", "eth0"), 0)
    d = tmp_path / "net"
    assert sorted(os.listdir(d)) == ["10.1.2.3", "fd00::3", "last_reserved_ip.0", "last_reserved_ip.1", "lock"]
    assert (d / "10.1.2.3").read_bytes() == b"c1\r\neth0"
    assert (d / "last_reserved_ip.0").read_bytes() == b"10.1.2.3"
    assert (d / "last_reserved_ip.1").read_bytes() == b"fd00::3"
    assert _mode(d / "10.1.2.3") == 0o644 & ~_umask()
    assert _mode(d / "last_reserved_ip.0") == 0o644 & ~_umask()
    assert _mode(d / "lock") == 0o750 & ~_umask()
    assert _mode(d) == 0o755 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_holdings_reads_current_and_legacy_owners(store, tmp_path):
    d = tmp_path / "net"
    with store.locked():
        (d / "10.1.2.3").write_bytes(b"c1\r\neth0")
        (d / "10.1.2.4").write_bytes(b"legacy-id\n")  # pre-ifname host-local
        (d / "10.1.2.5").write_bytes(b"")  # Go's #498 leftover: owned by nobody
        (d / "10.1.2.6").mkdir()  # unreadable as a file: still taken
        (d / "last_reserved_ip.0").write_bytes(b"10.1.2.3")
        (d / "10.01.2.7").write_bytes(b"x")  # not Go's spelling of an address: not a reservation
        (d / ".multipy-10.1.2.8.123").write_bytes(b"c9\r\neth0")  # a crash's temp file
        held = store.holdings()
    assert held == {
        ip_address("10.1.2.3"): Owner("c1", "eth0"),
        ip_address("10.1.2.4"): Owner("legacy-id", None),
        ip_address("10.1.2.5"): Owner("", None),
        ip_address("10.1.2.6"): None,
    }
    assert not (d / ".multipy-10.1.2.8.123").exists()


def test_owner_matching():
    assert Owner("c1", "eth0").is_for("c1", "eth0") and not Owner("c1", "eth0").is_for("c1", "net1")
    assert Owner("c1", None).is_legacy_for("c1") and not Owner("c1", "eth0").is_legacy_for("c1")
    assert Owner("c1", None).may_be_for("c1", "net1") and Owner("c1", "eth0").may_be_for("c1", "eth0")
    assert not Owner("c2", None).may_be_for("c1", "eth0")
    assert Owner.parse("  c1\r\neth0\n") == Owner("c1", "eth0")
    assert Owner("c1", "eth0").encode() == b"c1\r\neth0"


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"10.1.2.3", "10.1.2.3"),
        (b"fd00::3", "fd00::3"),
        (b"10.1.2.3\n", None),  # Go's net.ParseIP does not trim, so it restarts: so do we
        (b"garbage", None),
        (b"", None),
        (b"\xff", None),
    ],
)
def test_last_reserved(store, tmp_path, content, expected):
    with store.locked():
        assert store.last_reserved(0) is None
        (tmp_path / "net" / "last_reserved_ip.0").write_bytes(content)
        assert store.last_reserved(0) == (ip_address(expected) if expected else None)


def test_release_tolerates_missing_files(store, tmp_path):
    with store.locked():
        store.reserve(ip_address("10.1.2.3"), Owner("c1", "eth0"), 0)
        store.release([ip_address("10.1.2.3"), ip_address("10.1.2.4")])
        assert store.holdings() == {}


def test_no_reservation_is_visible_before_its_content(store, tmp_path, monkeypatch):
    """The name appears by link(2) only after the content is synced: a crash leaves no empty file."""
    seen = []
    real_link = os.link

    def link(src, dst):
        seen.append((os.path.basename(dst), os.path.exists(dst), open(src, "rb").read()))
        return real_link(src, dst)

    monkeypatch.setattr(store_module.os, "link", link)
    with store.locked():
        store.reserve(ip_address("10.1.2.3"), Owner("c1", "eth0"), 0)
    assert seen == [("10.1.2.3", False, b"c1\r\neth0")]
    assert not [n for n in os.listdir(tmp_path / "net") if n.startswith(".")]


@pytest.mark.parametrize("code", [errno.EPERM, errno.EOPNOTSUPP])
def test_without_hard_links_it_falls_back_to_o_excl(store, tmp_path, monkeypatch, code):
    def no_link(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(store_module.os, "link", no_link)
    with store.locked():
        assert store.reserve(ip_address("10.1.2.3"), Owner("c1", "eth0"), 0)
        assert not store.reserve(ip_address("10.1.2.3"), Owner("c2", "eth0"), 0)
    assert (tmp_path / "net" / "10.1.2.3").read_bytes() == b"c1\r\neth0"
    assert not [n for n in os.listdir(tmp_path / "net") if n.startswith(".")]


def test_a_held_lock_times_out_as_try_again_later(tmp_path):
    path = str(tmp_path / "net")
    holder = DiskStore(path)
    waiter = DiskStore(path, lock_timeout=0.2)
    with holder.locked():
        with pytest.raises(CNIError) as info:
            with waiter.locked():
                pass
    assert info.value.code == TRY_AGAIN_LATER
    assert "stayed locked for 0.2s" in info.value.msg
    with waiter.locked():  # released with the holder's fd
        pass


def test_io_failures_are_code_5(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(CNIError) as info:
        with DiskStore(str(tmp_path / "file" / "net")).locked():
            pass
    assert info.value.code == 5 and "cannot open the lock" in info.value.msg
