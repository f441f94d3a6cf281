"""Issue 13 defects 3 and 4: secrets in URLs never reach the log or the runtime's error, the log file is
0600, and bad input is a CNI error (6 or 7) naming the field, never a traceback or code 999."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest

from multipy import entry
from multipy.cni import skel
from multipy.cni.errors import CNIError
from multipy.log import Log, Rotation, Settings
from multipy.redact import REDACTED, redact


def _run(tmp_path, conf=None, raw: bytes | None = None, command: str = "ADD", make=entry.build):
    environ = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0",
               "CNI_NETNS": "/run/netns/none", "CNI_PATH": str(tmp_path)}  # fmt: skip
    out = io.StringIO()
    data = raw if raw is not None else json.dumps(conf).encode()
    code = skel.run(make, environ=environ, stdin=io.BytesIO(data), stdout=out)
    return code, (json.loads(out.getvalue()) if out.getvalue() else {})


def _conf(tmp_path, **keys) -> dict:
    conf = {"cniVersion": "1.0.0", "name": "meta", "type": "multus-cni", "cniDir": str(tmp_path / "cache"),
            "binDir": str(tmp_path), "delegates": [{"cniVersion": "1.0.0", "name": "a", "type": "nope"}]}
    conf.update(keys)
    return conf


# ---- 3: secrets in URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, secret", [
    ("etcd https://root:s3cr3t-pw@10.0.0.1:2379,https://u:other%40pw@h:2379 unreachable", "s3cr3t-pw"),
    ('"etcdURL": "https://root:s3cr3t-pw@etcd:2379"', "s3cr3t-pw"),
    ("Get https://admin:s3cr3t-pw@api.example:6443/api/v1/pods: dial tcp", "s3cr3t-pw"),
])  # fmt: skip
def test_a_urls_password_is_redacted(text, secret):
    out = redact(text)
    assert secret not in out and "other%40pw" not in out
    assert f":{REDACTED}@" in out
    assert "https://root:" in out or "https://admin:" in out  # the user and host stay: they help


def test_urls_without_a_password_and_mail_addresses_stay():
    for text in ("https://10.0.0.1:2379,https://10.0.0.2:2379", "ops@example.com", "http://[fd00::1]:2379/x"):
        assert redact(text) == text


def test_the_cni_error_the_runtime_prints_has_no_url_password(tmp_path):
    log_file = tmp_path / "multus.log"

    class Failing:
        def __getattr__(self, name):
            def fail(request):
                raise CNIError(11, "cannot reach etcd https://root:s3cr3t-pw@10.0.0.1:2379",
                               "tried https://root:s3cr3t-pw@10.0.0.2:2379 too")
            return fail

    def make(request, log):
        log.settings.configure(str(log_file), "debug", False)
        return Failing()

    code, doc = _run(tmp_path, _conf(tmp_path), make=make)
    assert code == 1 and doc["code"] == 11
    assert "s3cr3t-pw" not in json.dumps(doc)
    assert f"root:{REDACTED}@10.0.0.1" in doc["msg"]
    assert "s3cr3t-pw" not in log_file.read_text()


def test_an_unexpected_error_quoting_a_url_is_redacted_too(tmp_path):
    def make(request, log):
        raise RuntimeError("boom at https://u:s3cr3t-pw@host")

    code, doc = _run(tmp_path, _conf(tmp_path), make=make)
    assert doc["code"] == 999 and "s3cr3t-pw" not in doc["msg"]


@pytest.mark.parametrize("rotation", [None, Rotation(1024, 2, 0, True)], ids=["plain", "rotated"])
def test_the_log_file_is_created_0600_whatever_the_umask(tmp_path, rotation):
    path = tmp_path / "multus.log"
    old = os.umask(0o022)
    try:
        settings = Settings()
        settings.configure(str(path), "debug", False, rotation)
        log = Log(settings, "c1")
        for i in range(60 if rotation else 1):  # rotated: several rollovers, compressed backups
            log.error("line %d %s", i, "x" * 40)
        for handler in settings.logger().handlers:
            handler.close()
    finally:
        os.umask(old)
    files = [p for p in tmp_path.iterdir() if p.name.startswith("multus.log")]
    assert len(files) >= (3 if rotation else 1)
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name


# ---- 4: bad input is a CNI error naming the field --------------------------------------------------------


def _macvlan(**keys):
    return {"cniVersion": "1.0.0", "name": "m", "type": "macvlan", "master": "eth0",
            "ipam": {"type": "host-local", "subnet": "10.1.0.0/16"}, **keys}  # fmt: skip


BAD = {
    "logFile NUL": ({"logFile": "/tmp/x\x00y", "logLevel": "debug"}, 7, "logFile"),
    "logFile surrogate": ({"logFile": "/tmp/x\ud800", "logLevel": "debug"}, 7, "logFile"),
    "cniDir NUL": ({"cniDir": "/tmp/x\x00"}, 7, "cniDir"),
    "cniDir surrogate": ({"cniDir": "/tmp/\udc80"}, 7, "cniDir"),
    "cniDir relative": ({"cniDir": "cache"}, 7, "cniDir"),
    "binDir NUL": ({"binDir": "/x\x00"}, 7, "binDir"),
    "confDir NUL": ({"confDir": "/x\x00"}, 7, "confDir"),
    "kubeconfig NUL": ({"kubeconfig": "/x\x00"}, 7, "kubeconfig"),
    "readinessindicatorfile NUL": ({"readinessindicatorfile": "/x\x00"}, 7, "readinessindicatorfile"),
    "name with a trailing newline": ({"name": "meta\n"}, 7, "$.name"),
    "delegate name with a trailing newline": (
        {"delegates": [{"cniVersion": "1.0.0", "name": "a\n", "type": "nope"}]}, 7, "delegates[0].name"),
    "1 MB macvlan master": ({"delegates": [_macvlan(master="e" * 1_000_000)]}, 7, "master"),
    "dataDir NUL": ({"delegates": [_macvlan(ipam={"type": "host-local", "subnet": "10.1.0.0/16",
                                                  "dataDir": "/x\x00"})]}, 7, "dataDir"),  # fmt: skip
    "resolvConf surrogate": ({"delegates": [_macvlan(ipam={"type": "host-local", "subnet": "10.1.0.0/16",
                                                           "resolvConf": "/x\udc80"})]}, 7, "resolvConf"),  # fmt: skip
    "bridge name with NUL": ({"delegates": [{"cniVersion": "1.0.0", "name": "b", "type": "bridge", "bridge": "br\x00x",
                                             "ipam": {"type": "host-local", "subnet": "10.1.0.0/16"}}]}, 7, "bridge"),
    "bridge name with a newline": ({"delegates": [{"cniVersion": "1.0.0", "name": "b", "type": "bridge",
                                                   "bridge": "br0\n"}]}, 7, "bridge"),  # fmt: skip
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_cni_error_naming_the_field(tmp_path, case, capsys):
    keys, code, field = BAD[case]
    status, doc = _run(tmp_path, _conf(tmp_path, **keys))
    assert status == 1
    assert doc.get("code") == code, doc
    assert field in doc["msg"]
    assert len(doc["msg"]) < 1000  # quotes the value, never a megabyte of it
    assert "Traceback" not in capsys.readouterr().err
    # Refused before anything was made: no record, no bridge (the conf never reached a delegate).
    assert not (tmp_path / "cache").exists() or all(n == "internal" for n in os.listdir(tmp_path / "cache"))


@pytest.mark.parametrize("where", ["top", "runtimeConfig"])
@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_json_is_code_6(tmp_path, where, depth, capsys):
    conf = _conf(tmp_path)
    conf["runtimeConfig" if where == "runtimeConfig" else "x"] = "HOLE"
    raw = json.dumps(conf).replace('"HOLE"', "[" * depth + "]" * depth).encode()
    status, doc = _run(tmp_path, raw=raw)
    assert (status, doc.get("code")) == (1, 6)
    assert "nested deeper than" in doc["msg"]
    assert "Traceback" not in capsys.readouterr().err


def test_resolv_conf_on_a_device_or_fifo_is_refused_at_once(tmp_path):
    from multipy.ipam.resolv import read_resolv_conf

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        with pytest.raises(CNIError) as info:
            read_resolv_conf(path)
        assert info.value.code == 7 and "resolvConf" in info.value.msg and "not a regular file" in info.value.msg
    big = tmp_path / "big"
    big.write_bytes(b"nameserver 10.0.0.1\n" * 10000)
    with pytest.raises(CNIError, match="larger than"):
        read_resolv_conf(str(big))


def test_host_local_store_never_hangs_on_a_fifo_or_reads_a_device(tmp_path):
    from delegates.host_local.store import DiskStore

    store = DiskStore(str(tmp_path / "net"))
    os.makedirs(store.path)
    os.mkfifo(os.path.join(store.path, "10.0.0.5"))
    os.symlink("/dev/zero", os.path.join(store.path, "10.0.0.6"))
    os.symlink("/dev/zero", os.path.join(store.path, "last_reserved_ip.0"))
    with store.locked():
        held = store.holdings()
        assert held == {__import__("ipaddress").ip_address("10.0.0.5"): None,
                        __import__("ipaddress").ip_address("10.0.0.6"): None}  # unreadable: stays taken
        assert store.last_reserved(0) is None


def test_flannel_subnet_env_on_a_device_is_refused(tmp_path):
    from delegates import flannel_env

    with pytest.raises(CNIError) as info:
        flannel_env.load("/dev/zero")
    assert info.value.code == 5 and "not a regular file" in info.value.msg
