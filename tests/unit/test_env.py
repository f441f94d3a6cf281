"""multipy.cni.skel.run and multipy.cni.env: every environment and stdin error path, in process.

Each case drives `skel.run` with an environ dict, stdin bytes and a StringIO stdout,
and checks what a runtime would see: one JSON document on stdout, its `code`, a `msg`
naming the variable and the bad value, and the exit code.
"""

import io
import json

import pytest

from multipy.cni import env as cni_env
from multipy.cni import skel
from multipy.cni.errors import (
    DECODE_FAILURE,
    INCOMPATIBLE_VERSION,
    INTERNAL,
    INVALID_ENVIRONMENT,
    INVALID_NETWORK_CONFIG,
    CNIError,
)
from multipy.cni.result import Result
from multipy.cni.version import LATEST, SUPPORTED_VERSIONS

ABOUT = "test-plugin v0: about text"
COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
ENV_VARS = ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME")
REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": (),
    "STATUS": (),
    "VERSION": (),
}
NOT_REQUIRED = [(cmd, var) for cmd in COMMANDS for var in ENV_VARS if var not in REQUIRED[cmd]]
REQUIRED_PAIRS = [(cmd, var) for cmd in COMMANDS for var in REQUIRED[cmd]]


class Recorder:
    """A trivial handler: records every call; ADD returns an empty result."""

    def __init__(self, request, calls, fail=None):
        self.calls = calls
        self.fail = fail
        calls.append(("made", request))

    def _call(self, name, request):
        self.calls.append((name, request))
        if self.fail is not None:
            raise self.fail

    def add(self, request):
        self._call("add", request)
        return Result(request.cni_version)

    def delete(self, request):
        self._call("delete", request)

    def check(self, request):
        self._call("check", request)

    def gc(self, request):
        self._call("gc", request)

    def status(self, request):
        self._call("status", request)


def full_env(command, **overrides):
    environ = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "abc123",
        "CNI_NETNS": "/run/netns/test",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
    }
    environ.update(overrides)
    return {k: v for k, v in environ.items() if v is not None}


def conf(version="1.1.0", **extra):
    return json.dumps({"cniVersion": version, "name": "net", "type": "multus-cni", **extra}).encode()


def run(environ, stdin=None, fail=None):
    """(exit code, stdout text, parsed stdout or None, calls)."""
    calls = []
    out = io.StringIO()
    if stdin is None:
        stdin = conf()
    rc = skel.run(
        lambda request, log: Recorder(request, calls, fail),
        environ=environ,
        stdin=io.BytesIO(stdin),
        stdout=out,
        about=ABOUT,
    )
    text = out.getvalue()
    return rc, text, (json.loads(text) if text else None), calls


def assert_error(rc, doc, calls, code, *in_msg):
    assert rc == 1
    assert doc is not None, "an error must print a JSON document on stdout"
    assert doc["code"] == code, doc
    for piece in in_msg:
        assert piece in doc["msg"], (piece, doc["msg"])
    # A rejected request never reaches the handler.
    assert [c for c in calls if c[0] != "made"] == []


# ---- CNI_COMMAND -------------------------------------------------------------------


def test_missing_command_prints_about_on_stderr_and_exits_0(capsys):
    environ = full_env(None)
    rc, text, _, calls = run(environ)
    assert rc == 0
    assert text == ""
    assert calls == []
    assert ABOUT in capsys.readouterr().err


def test_empty_command_counts_as_missing(capsys):
    rc, text, _, calls = run(full_env(""))
    assert (rc, text, calls) == (0, "", [])
    assert ABOUT in capsys.readouterr().err


@pytest.mark.parametrize("command", ["FOO", "add", "Del", "VERSION ", "ADD;DEL"])
def test_unknown_command_is_code_4_naming_it(command):
    rc, _, doc, calls = run(full_env(command))
    assert_error(rc, doc, calls, INVALID_ENVIRONMENT, "CNI_COMMAND", command)


# ---- required variables per command ----------------------------------------------


@pytest.mark.parametrize("command, variable", REQUIRED_PAIRS)
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_required_variable_missing(command, variable, how):
    environ = full_env(command, **{variable: None if how == "absent" else ""})
    rc, _, doc, calls = run(environ)
    assert_error(rc, doc, calls, INVALID_ENVIRONMENT, variable, "missing")
    assert doc["msg"] == f"required env variables [{variable}] missing"


def test_all_missing_are_named_together():
    rc, _, doc, calls = run({"CNI_COMMAND": "ADD"})
    assert_error(rc, doc, calls, INVALID_ENVIRONMENT)
    assert doc["msg"] == "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME] missing"


@pytest.mark.parametrize("command, variable", NOT_REQUIRED)
def test_variable_not_required(command, variable):
    environ = full_env(command, **{variable: None})
    rc, text, doc, calls = run(environ)
    assert rc == 0, doc
    if command == "VERSION":
        assert doc["supportedVersions"] == list(SUPPORTED_VERSIONS)
    else:
        assert text == ""
        method = {"DEL": "delete", "GC": "gc", "STATUS": "status"}[command]
        assert [c[0] for c in calls] == ["made", method]


@pytest.mark.parametrize("command", ["GC", "STATUS", "VERSION"])
def test_commands_needing_only_cni_command(command):
    rc, text, doc, _ = run({"CNI_COMMAND": command})
    assert rc == 0
    if command == "VERSION":
        assert doc["cniVersion"] == LATEST
    else:
        assert text == ""


def test_del_with_empty_netns_reaches_the_handler():
    rc, text, _, calls = run(full_env("DEL", CNI_NETNS=""))
    assert (rc, text) == (0, "")
    request = calls[-1][1]
    assert request.env.netns == "" and request.env.container_id == "abc123" and request.env.ifname == "eth0"


def test_add_request_carries_the_environment():
    environ = full_env("ADD", CNI_PATH="/a:/b::/c", CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=p;X=1")
    rc, text, doc, calls = run(environ, conf("1.0.0"))
    assert rc == 0
    assert doc["cniVersion"] == "1.0.0"
    (_, request), (name, _) = calls
    assert name == "add"
    assert request.env.path == ("/a", "/b", "/c")
    assert request.env.arg("K8S_POD_NAME") == "p"
    assert request.env.arg("X") == "1"
    assert request.cni_version == "1.0.0"
    assert request.config["name"] == "net"


# ---- CNI_CONTAINERID ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
@pytest.mark.parametrize("bad", ["../x", ".hidden", "a/b", "-a", "_a", "a b", "a\nb", "é1", "abc/", "a:b"])
def test_bad_container_id(command, bad):
    rc, _, doc, calls = run(full_env(command, CNI_CONTAINERID=bad))
    assert_error(rc, doc, calls, INVALID_ENVIRONMENT, "CNI_CONTAINERID", repr(bad))


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_bad_container_id_is_rejected_even_when_not_required(command):
    rc, _, doc, calls = run(full_env(command, CNI_CONTAINERID="../x"))
    assert_error(rc, doc, calls, INVALID_ENVIRONMENT, "CNI_CONTAINERID", "'../x'")


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_empty_container_id_is_reported_missing(command):
    rc, _, doc, calls = run(full_env(command, CNI_CONTAINERID=""))
    assert_error(rc, doc, calls, INVALID_ENVIRONMENT, "CNI_CONTAINERID", "missing")


@pytest.mark.parametrize("good", ["a", "0", "abc123", "a.b-c_d", "A" * 64, "7f3e..x"])
def test_good_container_id(good):
    rc, _, _, calls = run(full_env("DEL", CNI_CONTAINERID=good))
    assert rc == 0
    assert calls[-1][1].env.container_id == good


# ---- CNI_IFNAME -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
@pytest.mark.parametrize("bad", ["a" * 16, ".", "..", "a/b", "a:b", "a b", "a\tb", " eth0", "eth0\n", "eth\u00a00"])
def test_bad_ifname(command, bad):
    rc, _, doc, calls = run(full_env(command, CNI_IFNAME=bad))
    assert_error(rc, doc, calls, INVALID_ENVIRONMENT, "CNI_IFNAME", repr(bad))


@pytest.mark.parametrize("good", ["eth0", "a" * 15, "net1.100", "a-b_c", "..a", "a."])
def test_good_ifname(good):
    rc, _, _, calls = run(full_env("ADD", CNI_IFNAME=good))
    assert rc == 0
    assert calls[-1][1].env.ifname == good


def test_ifname_limit_is_in_bytes():
    bad = "é" * 8  # 8 characters, 16 bytes
    rc, _, doc, calls = run(full_env("ADD", CNI_IFNAME=bad))
    assert_error(rc, doc, calls, INVALID_ENVIRONMENT, "CNI_IFNAME")


# ---- CNI_ARGS ------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", ["foo", "=x", "K8S_POD_NAME", "=", "IgnoreUnknown"])
def test_malformed_cni_args_pair(pair):
    raw = f"K8S_POD_NAMESPACE=ns;{pair}"
    rc, _, doc, calls = run(full_env("ADD", CNI_ARGS=raw))
    assert_error(rc, doc, calls, INVALID_ENVIRONMENT, "CNI_ARGS", repr(pair))


def test_unknown_cni_args_key_without_ignore_unknown_is_rejected():
    rc, _, doc, calls = run(full_env("ADD", CNI_ARGS="K8S_POD_NAME=p;FOO=bar;BAZ=1"))
    assert_error(rc, doc, calls, INVALID_ENVIRONMENT, "CNI_ARGS", "FOO", "BAZ", "IgnoreUnknown")
    assert "K8S_POD_NAME" not in doc["msg"]


@pytest.mark.parametrize("flag", ["0", "false", "no", ""])
def test_ignore_unknown_false_still_rejects(flag):
    rc, _, doc, calls = run(full_env("ADD", CNI_ARGS=f"IgnoreUnknown={flag};FOO=bar"))
    assert_error(rc, doc, calls, INVALID_ENVIRONMENT, "FOO")


@pytest.mark.parametrize("flag", ["1", "true", "True", "TRUE"])
def test_ignore_unknown_accepts_unknown_keys(flag):
    raw = f"IgnoreUnknown={flag};K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;FOO=bar;IP=10.0.0.5"
    rc, text, _, calls = run(full_env("ADD", CNI_ARGS=raw))
    assert rc == 0, text
    request = calls[-1][1]
    assert request.env.args == raw
    expected = {"IgnoreUnknown": flag, "K8S_POD_NAMESPACE": "ns", "K8S_POD_NAME": "p", "FOO": "bar", "IP": "10.0.0.5"}
    assert {key: request.env.arg(key) for key in expected} == expected
    assert request.env.arg("MISSING", "dflt") == "dflt"


@pytest.mark.parametrize(
    "raw, parsed",
    [
        ("", {}),
        ("K8S_POD_NAME=p", {"K8S_POD_NAME": "p"}),
        ("K8S_POD_NAME=", {"K8S_POD_NAME": ""}),
        ("K8S_POD_NAME=p;", {"K8S_POD_NAME": "p"}),
        ("IP=10.0.0.5;MAC=aa:bb:cc:dd:ee:ff", {"IP": "10.0.0.5", "MAC": "aa:bb:cc:dd:ee:ff"}),
    ],
)
def test_parse_args(raw, parsed):
    assert cni_env.parse_args(raw) == parsed


def test_format_args_round_trips():
    pairs = {"IgnoreUnknown": "1", "K8S_POD_NAME": "p", "X": "y"}
    assert cni_env.parse_args(cni_env.format_args(pairs)) == pairs


# ---- stdin configuration ----------------------------------------------------------------------


@pytest.mark.parametrize("stdin", [b"{", b"not json", b"", b'{"cniVersion": "1.0.0",}', b"\xff\xfe\x00garbage"])
def test_invalid_json_is_code_6(stdin):
    rc, _, doc, calls = run(full_env("ADD"), stdin)
    assert_error(rc, doc, calls, DECODE_FAILURE, "network configuration")
    assert "cniVersion" not in doc


@pytest.mark.parametrize("stdin", [b"[]", b'"text"', b"1", b"null", b"true", b'[{"cniVersion": "1.0.0"}]'])
def test_non_object_json_is_code_6(stdin):
    rc, _, doc, calls = run(full_env("ADD"), stdin)
    assert_error(rc, doc, calls, DECODE_FAILURE, "JSON object")


@pytest.mark.parametrize("version", [1.0, 1, ["1.0.0"], {"v": "1.0.0"}, True])
def test_non_string_cni_version_is_code_6(version):
    rc, _, doc, calls = run(full_env("ADD"), json.dumps({"cniVersion": version, "name": "n"}).encode())
    assert_error(rc, doc, calls, DECODE_FAILURE, "cniVersion")
    assert "cniVersion" not in doc


@pytest.mark.parametrize("version", [0, False, [], {}])
def test_falsy_non_string_cni_version_is_code_6(version):
    rc, _, doc, calls = run(full_env("ADD"), json.dumps({"cniVersion": version, "name": "n"}).encode())
    assert_error(rc, doc, calls, DECODE_FAILURE, "cniVersion")


@pytest.mark.parametrize("version", ["9.9.9", "1.0", "v1.0.0", "1.2.0", "0.0.1", "latest"])
def test_unsupported_cni_version_is_code_1(version):
    rc, _, doc, calls = run(full_env("ADD"), conf(version))
    assert_error(rc, doc, calls, INCOMPATIBLE_VERSION, "cniVersion", repr(version))


def test_missing_cni_version_means_0_1_0():
    rc, _, doc, calls = run(full_env("ADD"), b'{"name": "n", "type": "t"}')
    assert rc == 0
    assert calls[-1][1].cni_version == "0.1.0"
    rc, _, doc, calls = run(full_env("CHECK"), b'{"name": "n", "type": "t"}')
    assert_error(rc, doc, calls, INCOMPATIBLE_VERSION, "CHECK")


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1"])
def test_check_before_0_4_0_is_code_1(version):
    rc, _, doc, calls = run(full_env("CHECK"), conf(version))
    assert_error(rc, doc, calls, INCOMPATIBLE_VERSION, "CHECK", repr(version), "0.4.0")
    assert doc["cniVersion"] == version


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_check_from_0_4_0(version):
    rc, text, _, calls = run(full_env("CHECK"), conf(version))
    assert (rc, text) == (0, "")
    assert calls[-1][0] == "check"


@pytest.mark.parametrize("command", ["GC", "STATUS"])
@pytest.mark.parametrize("version", [v for v in SUPPORTED_VERSIONS if v != "1.1.0"])
def test_gc_and_status_before_1_1_0_are_code_1(command, version):
    rc, _, doc, calls = run({"CNI_COMMAND": command}, conf(version))
    assert_error(rc, doc, calls, INCOMPATIBLE_VERSION, command, repr(version), "1.1.0")


@pytest.mark.parametrize("command", ["ADD", "DEL"])
@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_add_and_del_in_every_version(command, version):
    rc, text, doc, calls = run(full_env(command), conf(version))
    assert rc == 0
    assert calls[-1][0] == ("add" if command == "ADD" else "delete")
    if command == "ADD":
        assert doc["cniVersion"] == version
    else:
        assert text == ""


def test_environment_is_checked_before_stdin():
    rc, _, doc, calls = run({"CNI_COMMAND": "ADD"}, b"{broken")
    assert_error(rc, doc, calls, INVALID_ENVIRONMENT, "missing")


# ---- errors from the handler ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "GC", "STATUS"])
def test_unexpected_exception_is_999_without_traceback(command):
    boom = RuntimeError("boom: the handler crashed")
    rc, text, doc, calls = run(full_env(command), conf("1.1.0"), fail=boom)
    assert rc == 1
    assert doc["code"] == INTERNAL
    assert "RuntimeError" in doc["msg"] and "boom" in doc["msg"]
    assert "Traceback" not in text
    assert set(doc) <= {"cniVersion", "code", "msg", "details"}


def test_exception_in_the_handler_factory_is_999():
    out = io.StringIO()

    def factory(request, log):
        raise KeyError("no such thing")

    rc = skel.run(factory, environ=full_env("ADD"), stdin=io.BytesIO(conf()), stdout=out)
    doc = json.loads(out.getvalue())
    assert rc == 1
    assert doc["code"] == INTERNAL
    assert "Traceback" not in out.getvalue()


def test_add_returning_nothing_is_999():
    class NoResult(Recorder):
        def add(self, request):
            return None

    out = io.StringIO()
    rc = skel.run(lambda r, log: NoResult(r, []), environ=full_env("ADD"), stdin=io.BytesIO(conf()), stdout=out)
    assert rc == 1
    assert json.loads(out.getvalue())["code"] == INTERNAL


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "GC", "STATUS"])
@pytest.mark.parametrize("version", ["1.1.0"])
def test_cni_error_from_handler_keeps_code_and_config_version(command, version):
    err = CNIError(INVALID_NETWORK_CONFIG, "delegate x is broken", "more detail")
    rc, text, doc, _ = run(full_env(command), conf(version), fail=err)
    assert rc == 1
    assert doc == {"cniVersion": version, "code": 7, "msg": "delegate x is broken", "details": "more detail"}
    assert list(doc) == ["cniVersion", "code", "msg", "details"]


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_cni_error_from_handler_in_older_versions(version):
    rc, _, doc, _ = run(full_env("ADD"), conf(version), fail=CNIError(11, "try again"))
    assert rc == 1
    assert doc == {"cniVersion": version, "code": 11, "msg": "try again"}


def test_error_output_is_one_indented_document_without_trailing_newline():
    rc, text, doc, _ = run(full_env("ADD"), conf(), fail=CNIError(5, "io"))
    assert rc == 1
    assert not text.endswith("\n")
    assert text == json.dumps(doc, indent=4)


# ---- VERSION -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_version_echoes_the_requested_version(version):
    rc, _, doc, calls = run({"CNI_COMMAND": "VERSION"}, json.dumps({"cniVersion": version}).encode())
    assert rc == 0
    assert doc == {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}
    assert len(doc["supportedVersions"]) == 7
    assert calls == []  # VERSION never builds a handler


@pytest.mark.parametrize("stdin", [b"", b"{}", b"garbage", b"[]", b"null", b'{"cniVersion": 1}', b'{"cniVersion": ""}'])
def test_version_without_usable_stdin_replies_latest(stdin):
    rc, _, doc, _ = run({"CNI_COMMAND": "VERSION"}, stdin)
    assert rc == 0
    assert doc == {"cniVersion": LATEST, "supportedVersions": list(SUPPORTED_VERSIONS)}
    assert LATEST == "1.1.0"


def test_version_as_libcni_calls_it():
    # libcni passes "dummy" for CNI_NETNS, CNI_IFNAME and CNI_PATH.
    environ = {"CNI_COMMAND": "VERSION", "CNI_NETNS": "dummy", "CNI_IFNAME": "dummy", "CNI_PATH": "dummy"}
    rc, _, doc, _ = run(environ, b'{"cniVersion":"1.1.0"}')
    assert rc == 0
    assert doc["cniVersion"] == "1.1.0"


def test_version_ignores_the_other_variables():
    environ = full_env("VERSION", CNI_CONTAINERID="../x", CNI_IFNAME="a/b", CNI_ARGS="garbage")
    rc, _, doc, _ = run(environ, b'{"cniVersion":"0.4.0"}')
    assert rc == 0
    assert doc["cniVersion"] == "0.4.0"
