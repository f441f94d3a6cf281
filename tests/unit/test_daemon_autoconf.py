"""The daemon's autoConf (multipy/daemon/autoconf.py) and its settings: the conf made from the primary
as `install --auto --thick` makes it, written only when it changed, never replaced by a broken one,
a failure logged once; the keys checked when the daemon's config file is read."""

from __future__ import annotations

import json
import os

import pytest

from multipy.cli.install_files import place
from multipy.cni.errors import CNIError
from multipy.config import auto
from multipy.daemon import settings as daemon_settings
from multipy.daemon.autoconf import AutoConf
from multipy.plugins.registry import Registry

FLANNEL = {"name": "cbr0", "cniVersion": "0.3.1", "plugins": [
    {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
    {"type": "portmap", "capabilities": {"portMappings": True}},
]}  # fmt: skip


class Log:
    def __init__(self):
        self.records: list[tuple[str, str]] = []

    def info(self, msg, *args):
        self.records.append(("info", msg % args))

    def error(self, msg, *args):
        self.records.append(("error", msg % args))


@pytest.fixture
def node(tmp_path):
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-flannel.conflist").write_text(json.dumps(FLANNEL))
    settings = daemon_settings.from_document({"autoConf": True, "cniConfigDir": str(conf_dir),
                                              "socketDir": str(tmp_path / "run"),
                                              "autoConfOptions": {"logLevel": "verbose"}})  # fmt: skip
    return conf_dir, settings


def test_the_conf_is_written_once_then_only_when_the_primary_changes(node):
    conf_dir, settings = node
    log = Log()
    keeper = AutoConf(place, log, Registry().schema_for)
    target = conf_dir / "00-multus.conf"
    assert keeper.refresh(settings) == "created"
    assert json.loads(target.read_text()) == auto.generate(
        FLANNEL, "multus-shim", {"daemonSocketDir": settings.socket_dir, "logLevel": "verbose"})  # fmt: skip
    assert oct(os.stat(target).st_mode & 0o777) == "0o600"
    inode = os.stat(target).st_ino
    assert keeper.refresh(settings) == "unchanged" and os.stat(target).st_ino == inode
    assert log.records == [("info", f"autoConf: created {target} from {conf_dir}/10-flannel.conflist")]

    (conf_dir / "10-flannel.conflist").write_text(json.dumps({**FLANNEL, "cniVersion": "1.0.0"}))
    assert keeper.refresh(settings) == "updated"
    assert json.loads(target.read_text())["cniVersion"] == "1.0.0" and os.stat(target).st_ino != inode


def test_a_broken_primary_leaves_the_conf_and_is_logged_once(node):
    conf_dir, settings = node
    log = Log()
    keeper = AutoConf(place, log, Registry().schema_for)
    keeper.refresh(settings)
    target = conf_dir / "00-multus.conf"
    before = target.read_bytes()
    (conf_dir / "10-flannel.conflist").write_text('{"name": ')
    assert keeper.refresh(settings) is None and keeper.refresh(settings) is None
    errors = [text for level, text in log.records if level == "error"]
    assert len(errors) == 1 and errors[0].startswith(f"autoConf: {conf_dir}/10-flannel.conflist: $: not valid JSON")
    assert errors[0].endswith("; the conf stays as it was")
    # A primary the delegate's own schema refuses: as `multipy validate` would, nothing written.
    broken = {**FLANNEL, "plugins": [{"type": "flannel", "delegate": {"mtu": "1400"}}]}
    (conf_dir / "10-flannel.conflist").write_text(json.dumps(broken))
    assert keeper.refresh(settings) is None
    assert log.records[-1] == ("error", f"autoConf: {target} (made from {conf_dir}/10-flannel.conflist): "
                               "$.delegates[0].plugins[0].delegate.mtu: '1400' is not of type 'integer'; "
                               "the conf stays as it was")  # fmt: skip
    assert target.read_bytes() == before
    (conf_dir / "10-flannel.conflist").unlink()
    assert keeper.refresh(settings) is None and target.read_bytes() == before
    assert "no CNI conf" in log.records[-1][1]


def test_off_writes_nothing(node):
    conf_dir, settings = node
    keeper = AutoConf(place, Log())
    from dataclasses import replace

    assert keeper.refresh(replace(settings, auto_conf=False)) is None
    assert sorted(os.listdir(conf_dir)) == ["10-flannel.conflist"]


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"autoConf": "yes"}, "autoConf 'yes' is not a boolean"),
        ({"cniConfigDir": "net.d"}, "cniConfigDir 'net.d' is not an absolute path"),
        ({"autoConfName": "00-multus.conflist"}, "autoConfName '00-multus.conflist' is not a conf file name"),
        ({"autoConfPrimary": "../x.conf"}, "autoConfPrimary '../x.conf' is not a conf file name"),
        ({"autoConfOptions": ["logLevel"]}, "autoConfOptions ['logLevel'] is not an object"),
        ({"autoConfOptions": {"delegates": []}}, "autoConfOptions.delegates: cannot be set: made from the primary"),
        ({"autoConfOptions": {"loglevel": "debug"}}, "autoConfOptions.loglevel: unknown key of multipy's conf"),
    ],
)
def test_bad_autoconf_settings_name_the_key(doc, message):
    with pytest.raises(CNIError) as excinfo:
        daemon_settings.from_document(doc)
    assert message in excinfo.value.msg


def test_command_line_options_go_over_the_files_key_by_key(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"autoConf": True, "autoConfOptions": {"logLevel": "debug", "logFile": "/x.log"}}))
    source = daemon_settings.Source(str(path), {"autoConfOptions": {"logLevel": "error"}, "autoConfName": "01-m.conf"})
    assert source.current.auto_conf_options == {"logLevel": "error", "logFile": "/x.log"}
    assert (source.current.auto_conf, source.current.auto_conf_name) == (True, "01-m.conf")
    # Edited while running: applied at once (the next second's refresh), no restart.
    path.write_text(json.dumps({"autoConf": True, "autoConfPrimary": "20-bridge.conf"}))
    os.utime(path, ns=(1, 1))
    settings, pending = source.reload()
    assert settings.auto_conf_primary == "20-bridge.conf" and pending == []
    assert settings.auto_conf_options == {"logLevel": "error"}
