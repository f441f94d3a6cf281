"""Logging: Multus's keys, per-request tags, appending, and no logging import when nothing is written."""

from __future__ import annotations

import subprocess
import sys

from multipy.log import Log, Settings


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
