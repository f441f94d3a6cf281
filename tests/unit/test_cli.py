"""The operator CLI (`multipy validate`, `multipy versions`) and the `multipy` script's CNI mode."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from multipy.cli.commands import cli
from multipy.cni.version import SUPPORTED_VERSIONS

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "conf" / "10-multus.conf"
SCRIPT = Path(sys.executable).parent / "multipy"
VERSIONS_LINE = "0.1.0 0.2.0 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0"


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def script(*args, env=None, stdin=b""):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    environ.update(env or {})
    return subprocess.run([str(SCRIPT), *args], input=stdin, capture_output=True, env=environ, timeout=60)


@pytest.fixture
def broken(tmp_path):
    doc = json.loads(SEED.read_text())
    doc["delegates"][1]["masterplugin"] = "yes"
    del doc["delegates"][0]["type"]
    doc["thatkey"] = True
    path = tmp_path / "broken.conf"
    path.write_text(json.dumps(doc, indent=2))
    return path


BROKEN_PROBLEMS = [
    ("$.delegates[0]", "'type' is a required property"),
    ("$.delegates[1].masterplugin", "'yes' is not of type 'boolean'"),
    ("$.thatkey", "unknown key"),
]


# ---- validate -------------------------------------------------------------------------


def test_validate_seed_conf():
    result = invoke("validate", str(SEED))
    assert result.exit_code == 0
    assert result.stdout == f"{SEED}: valid\n"


def test_validate_seed_conf_as_json():
    result = invoke("validate", "--output", "json", str(SEED))
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"file": str(SEED), "valid": True, "warnings": [], "unchecked": [],
                                         "problems": []}


def test_validate_broken_lists_every_problem_with_its_path(broken):
    result = invoke("validate", str(broken))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert sorted(lines) == sorted(f"{broken}: {path}: {message}" for path, message in BROKEN_PROBLEMS)
    assert f"{broken}: 3 problem(s)" in result.stderr
    assert not any(line.endswith(": valid") for line in lines)


@pytest.mark.parametrize("flag", ["--output", "-o"])
def test_validate_broken_as_json(broken, flag):
    result = invoke("validate", flag, "json", str(broken))
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["file"] == str(broken)
    assert doc["valid"] is False
    assert sorted((p["path"], p["message"]) for p in doc["problems"]) == sorted(BROKEN_PROBLEMS)
    assert all(set(p) == {"path", "message"} for p in doc["problems"])


def test_validate_missing_file_exits_2(tmp_path):
    missing = tmp_path / "nope.conf"
    result = invoke("validate", str(missing))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert str(missing) in result.stderr and "cannot read" in result.stderr


def test_validate_a_directory_exits_2(tmp_path):
    result = invoke("validate", str(tmp_path))
    assert result.exit_code == 2


@pytest.mark.parametrize("content", [b"{", b"", b"not json at all", b"\xff\xfe"])
def test_validate_invalid_json_is_a_problem_at_root(tmp_path, content):
    path = tmp_path / "bad.conf"
    path.write_bytes(content)
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{path}: $: not valid JSON")
    result = invoke("validate", "-o", "json", str(path))
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    assert [p["path"] for p in doc["problems"]] == ["$"]


def test_validate_non_object_json(tmp_path):
    path = tmp_path / "list.conf"
    path.write_text("[]")
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert result.stdout == f"{path}: $: the configuration must be a JSON object\n"


def test_validate_reads_stdin_with_a_dash():
    result = CliRunner().invoke(cli, ["validate", "-"], input=SEED.read_bytes())
    assert result.exit_code == 0
    assert result.stdout == "-: valid\n"


def test_validate_rejects_an_unknown_output_format():
    result = invoke("validate", "-o", "yaml", str(SEED))
    assert result.exit_code == 2


# ---- versions, help --------------------------------------------------------------------


def test_versions_prints_the_seven_versions():
    result = invoke("versions")
    assert result.exit_code == 0
    assert result.stdout.split() == list(SUPPORTED_VERSIONS)
    assert len(result.stdout.split()) == 7
    assert result.stdout == VERSIONS_LINE + "\n"


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["validate", "--help"], ["versions", "--help"]])
def test_help(args):
    result = invoke(*args)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage:")


def test_help_lists_the_commands():
    result = invoke("--help")
    assert "validate" in result.stdout and "versions" in result.stdout


def test_version_option():
    from multipy import __version__

    result = invoke("--version")
    assert result.exit_code == 0
    assert __version__ in result.stdout


# ---- the real console script ----------------------------------------------------------------


def test_script_validate_seed():
    out = script("validate", str(SEED))
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == f"{SEED}: valid\n"


def test_script_validate_broken(broken):
    out = script("validate", str(broken))
    assert out.returncode == 1
    for path, message in BROKEN_PROBLEMS:
        assert f"{broken}: {path}: {message}" in out.stdout.decode()


def test_script_validate_missing_file(tmp_path):
    out = script("validate", str(tmp_path / "nope.conf"))
    assert out.returncode == 2


def test_script_versions_and_help():
    out = script("versions")
    assert (out.returncode, out.stdout.decode()) == (0, VERSIONS_LINE + "\n")
    out = script("--help")
    assert out.returncode == 0 and b"Usage:" in out.stdout


def test_script_with_empty_cni_command_is_the_cli():
    out = script("versions", env={"CNI_COMMAND": ""})
    assert (out.returncode, out.stdout.decode()) == (0, VERSIONS_LINE + "\n")


@pytest.mark.parametrize("requested", ["0.4.0", "1.1.0"])
def test_script_with_cni_command_is_the_plugin(requested):
    out = script(env={"CNI_COMMAND": "VERSION"}, stdin=json.dumps({"cniVersion": requested}).encode())
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"cniVersion": requested, "supportedVersions": list(SUPPORTED_VERSIONS)}


def test_script_as_plugin_ignores_cli_arguments():
    # The runtime runs the plugin without arguments, but anything on argv must not turn it into the CLI.
    out = script("validate", env={"CNI_COMMAND": "VERSION"}, stdin=b"")
    assert out.returncode == 0
    assert json.loads(out.stdout)["cniVersion"] == "1.1.0"


def test_script_as_plugin_reports_env_errors_as_json():
    out = script(env={"CNI_COMMAND": "ADD"}, stdin=SEED.read_bytes())
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert doc["code"] == 4 and "CNI_CONTAINERID" in doc["msg"]


def _imported_modules(env):
    """Module names the real script imports, from `python -X importtime`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    environ.update(env)
    out = subprocess.run(
        [sys.executable, "-X", "importtime", str(SCRIPT), *([] if env.get("CNI_COMMAND") else ["versions"])],
        input=b'{"cniVersion":"1.0.0"}',
        capture_output=True,
        env=environ,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    modules = set()
    for line in out.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    assert modules, "importtime printed nothing"
    return out, modules


def test_script_as_plugin_does_not_import_click():
    out, modules = _imported_modules({"CNI_COMMAND": "VERSION"})
    assert json.loads(out.stdout)["cniVersion"] == "1.0.0"
    assert "multipy.entry" in modules
    assert not any(m == "click" or m.startswith("click.") for m in modules), sorted(modules)
    assert "multipy.cli.commands" not in modules


def test_script_as_cli_does_import_click():
    # The control for the test above: the same measurement does see click when it is used.
    _, modules = _imported_modules({})
    assert "click" in modules
    assert "multipy.cli.commands" in modules


def test_versions_as_json():
    result = CliRunner().invoke(cli, ["versions", "-o", "json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["cniVersions"] == ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def test_versions_rejects_a_bad_output_format():
    result = CliRunner().invoke(cli, ["versions", "-o", "yaml"])
    assert result.exit_code == 2 and "'yaml' is not one of" in result.output
