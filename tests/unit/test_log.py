"""Logging: Multus's keys, per-request tags on every line, appending, redaction, no logging import
when nothing is written, and logOptions' rotation shared by many processes."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time

import pytest

from multipy.log import Log, Rotation, Settings
from multipy.redact import redact


def test_records_carry_container_and_pod_and_are_appended(tmp_path):
    path = tmp_path / "multipy.log"
    path.write_text("earlier line\n")
    settings = Settings()
    settings.configure(str(path), "verbose", False)
    log = Log(settings, "c0ffee", "default", "database-2-0")

    log.info("ADD %s done", "k8snet2")
    log.debug("not at verbose")

    lines = path.read_text().splitlines()
    assert lines[0] == "earlier line"
    assert lines[1].endswith("INFO [c0ffee default/database-2-0] ADD k8snet2 done")
    assert len(lines) == 2


def test_without_a_target_only_errors_reach_stderr(capsys):
    log = Log(Settings(), "c1")
    log.info("quiet")
    log.error("loud %d", 7)
    err = capsys.readouterr().err
    assert "quiet" not in err
    assert "ERROR [c1 -] loud 7" in err


def test_panic_level_writes_nothing(tmp_path):
    settings = Settings()
    settings.configure(str(tmp_path / "l"), "panic", False)
    Log(settings).error("x")
    assert not (tmp_path / "l").exists() or (tmp_path / "l").read_text() == ""


def test_logging_is_not_imported_when_nothing_is_written():
    code = (
        "import sys; from multipy.log import Log, Settings; s = Settings(); s.configure(None, 'debug', False);"
        "Log(s).info('x'); assert 'logging' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- every line tagged, secrets redacted ---------------------------------------------------

TOKEN = "4f1c2a9be0d34c7f8a61b2c3d4e5f607"


def _logged(tmp_path, *messages, level="debug", exc=False) -> list[str]:
    path = tmp_path / "multipy.log"
    settings = Settings()
    settings.configure(str(path), level, False)
    log = Log(settings, "c0ffee", "default", "web-1")
    for message in messages:
        log.debug("%s", message)
    if exc:
        try:
            raise ValueError(f"Authorization: Bearer {TOKEN}")
        except ValueError:
            log.exception("delegate crashed")
    return path.read_text().splitlines()


def test_every_line_of_a_multi_line_record_carries_container_and_pod(tmp_path):
    lines = _logged(tmp_path, "bridge stderr: first\nsecond\r\nthird", exc=True)
    assert len(lines) > 4  # the traceback spans several lines
    assert all(" [c0ffee default/web-1] " in line for line in lines), lines
    assert lines[0].endswith("DEBUG [c0ffee default/web-1] bridge stderr: first")
    assert lines[1].endswith("DEBUG [c0ffee default/web-1] second")
    assert any(line.endswith("ValueError: Authorization: [REDACTED]") for line in lines)


KUBECONFIG_YAML = f"""apiVersion: v1
users:
- name: multus
  user:
    token: {TOKEN}
    client-key-data: TFMwdExTMUNSVWRKVGlCU1UwRWdVRkpKVmtGVVJTQkxSVmt0TFMwdExRbz0=
"""
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA" + "x" * 40 + "\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    "message, secret, kept",
    [
        (f"Authorization: Bearer {TOKEN}", TOKEN, "Authorization: [REDACTED]"),
        (f"{{'authorization': 'Basic {TOKEN}'}}", TOKEN, "'authorization': '[REDACTED]'"),
        (f"header bearer {TOKEN}", TOKEN, "bearer [REDACTED]"),
        (json.dumps({"user": {"token": TOKEN}}), TOKEN, '{"user": {"token": "[REDACTED]"}}'),
        (
            json.dumps({"password": "hunter2!", "etcdKeyFile": "/etc/k.pem"}),
            "hunter2!",
            '{"password": "[REDACTED]", "etcdKeyFile": "/etc/k.pem"}',
        ),
        (json.dumps({"apiKey": TOKEN}), TOKEN, '"apiKey": "[REDACTED]"'),
        (json.dumps({"spec": {"config": json.dumps({"token": TOKEN})}}), TOKEN, '\\"token\\": \\"[REDACTED]\\"'),
        (KUBECONFIG_YAML, TOKEN, "    token: [REDACTED]"),
        (KUBECONFIG_YAML, "TFMwdExTMUNS", "    client-key-data: [REDACTED]"),
        (f"GET /x?token={TOKEN}&watch=1", TOKEN, "token=[REDACTED]&watch=1"),
        (
            PEM + "\n-----BEGIN CERTIFICATE-----\nMIIcert\n-----END CERTIFICATE-----",
            "MIIEowIBAAKCAQEA",
            "[REDACTED] PRIVATE KEY\n-----BEGIN CERTIFICATE-----\nMIIcert",
        ),
        (json.dumps({"key": PEM}), "MIIEowIBAAKCAQEA", '{"key": "[REDACTED]"}'),
        (
            "tail: -----BEGIN PRIVATE KEY-----\nMIIEowIBAAKCAQEA cut off",
            "MIIEowIBAAKCAQEA",
            "tail: [REDACTED] PRIVATE KEY",
        ),
    ],
)
def test_redact(message, secret, kept):
    out = redact(message)
    assert secret not in out
    assert kept in out


@pytest.mark.parametrize(
    "message",
    [
        "$.delegates[1].ipam.etcdConfig.etcdKeyFile: cannot read /etc/kubernetes/ssl/kubernetes-key.pem",
        "ipam: unknown key(s) 'thatkey' (kube-ipam knows etcdConfig, kubeConfig)",
        'delegate "k8snet2" (macvlan on net1) ADD failed: Link not found',
        "kube-ipam: the credentials of ipam.kubeConfig /etc/k.kubeconfig were refused: HTTP 401: Unauthorized",
        "clients with bearer tokens; authorization failed: forbidden",
        json.dumps({"etcdCertFile": "/c.pem", "etcdKeyFile": "/k.pem", "tokenFile": "/t"}),
    ],
)
def test_redact_leaves_ordinary_records_alone(message):
    assert redact(message) == message


def test_no_secret_reaches_the_file(tmp_path):
    lines = _logged(tmp_path, KUBECONFIG_YAML, f"Authorization: Bearer {TOKEN}", PEM, exc=True)
    text = "\n".join(lines)
    assert TOKEN not in text and "MIIEowIBAAKCAQEA" not in text and "TFMwdExTMUNS" not in text
    assert "[REDACTED]" in text


def test_the_file_is_appended_to_across_settings_and_processes(tmp_path):
    path = tmp_path / "multipy.log"
    for n in range(2):
        code = (
            "import sys; from multipy.log import Log, Settings; s = Settings(); "
            f"s.configure({str(path)!r}, 'verbose', False); Log(s, 'c{n}', 'ns', 'p{n}').info('run {n}')"
        )
        subprocess.run([sys.executable, "-c", code], check=True)
    lines = path.read_text().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["run 0", "run 1"]
    assert "[c0 ns/p0]" in lines[0] and "[c1 ns/p1]" in lines[1]


# ---- logOptions: rotation shared by many processes -----------------------------------------

MB = 1024 * 1024


def _rotating(path, **log_options) -> Log:
    settings = Settings()
    settings.configure(str(path), "debug", False, Rotation.from_log_options(log_options))
    return Log(settings, "c0ffee", "default", "web-1")


def _lines(path) -> list[str]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        return f.read().splitlines()


def test_log_options_take_multus_defaults_for_what_is_left_out():
    assert Rotation.from_log_options({}) == Rotation(max_bytes=100 * MB, backups=5, max_age_days=5, compress=True)
    assert Rotation.from_log_options({"maxSize": 1, "maxBackups": 2, "maxAge": 0, "compress": False}) == Rotation(
        max_bytes=MB, backups=2, max_age_days=0, compress=False
    )
    # lumberjack's zeros: maxSize 0 is its default size, maxBackups 0 keeps every backup.
    zeros = Rotation.from_log_options({"maxSize": 0, "maxBackups": 0})
    assert zeros.max_bytes == 100 * MB and zeros.backups >= 1000


def test_tiny_max_size_rolls_over_keeps_max_backups_and_compresses(tmp_path):
    path = tmp_path / "multipy.log"
    log = _rotating(path, maxSize=1, maxBackups=2, compress=True)
    record = "x" * 1000
    for n in range(3500):  # about 3.4 MB: three rollovers of a 1 MB file
        log.info("%d %s", n, record)

    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["multipy.log", "multipy.log.1.gz", "multipy.log.2.gz", "multipy.log.lock"]
    newest, older = _lines(tmp_path / "multipy.log.1.gz"), _lines(tmp_path / "multipy.log.2.gz")
    current = _lines(path)
    for lines in (older, newest, current):
        assert 0 < sum(len(line) + 1 for line in lines) <= MB
    numbers = [int(line.split("] ", 1)[1].split()[0]) for line in older + newest + current]
    assert numbers == list(range(numbers[0], 3500)), "the kept files hold the last records, in order, none lost"


def test_backups_older_than_max_age_are_removed_at_the_next_rollover(tmp_path):
    path = tmp_path / "multipy.log"
    log = _rotating(path, maxSize=1, maxBackups=5, maxAge=1, compress=False)
    record = "y" * 1000
    for n in range(2200):  # two rollovers
        log.info("%d %s", n, record)
    assert (tmp_path / "multipy.log.1").exists() and (tmp_path / "multipy.log.2").exists()
    two_days_ago = time.time() - 2 * 86400
    os.utime(tmp_path / "multipy.log.2", (two_days_ago, two_days_ago))

    for n in range(1100):  # one more rollover: .1 becomes .2, the expired .2 became .3 and goes
        log.info("%d %s", n, record)
    assert sorted(p.name for p in tmp_path.glob("multipy.log.*")) == [
        "multipy.log.1",
        "multipy.log.2",
        "multipy.log.lock",
    ]


WRITER = """
import sys
from multipy.log import Log, Rotation, Settings
path, name = sys.argv[1], sys.argv[2]
settings = Settings()
settings.configure(path, "verbose", False, Rotation.from_log_options({"maxSize": 1, "maxBackups": 50, "compress": False}))
log = Log(settings, name)
for n in range(1500):
    log.info("%s %d %s", name, n, "z" * 700)
"""


def test_processes_appending_to_one_file_lose_and_split_no_record(tmp_path):
    """Four CNI-like processes writing about 1 MB each: every record ends up whole in exactly one
    file, and no process wrote into a file another had already rolled over."""
    path = tmp_path / "multipy.log"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"p{i}"]) for i in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]

    files = [path, *sorted(tmp_path.glob("multipy.log.[0-9]*"))]
    assert len(files) >= 4
    records = []
    for file in files:
        assert file.stat().st_size <= MB, f"{file.name} grew past maxSize: a writer missed a rollover"
        records += [line.split("] ", 1)[1].split()[:2] for line in _lines(file)]
    assert sorted(records) == sorted([f"p{i}", str(n)] for i in range(4) for n in range(1500))


def test_without_log_options_the_file_is_only_appended_to(tmp_path):
    path = tmp_path / "multipy.log"
    settings = Settings()
    settings.configure(str(path), "verbose", False)
    Log(settings).info("%s", "w" * 2000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multipy.log"]
