"""What plugin packages offer operators, reached through their declarations only: `multipy`
subcommands from the multipy.cli entry-point group, and `multipy status` lines from a plugin
factory's status_checks. The CLI itself imports no delegate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from multipy.cli import checks
from multipy.cli.commands import cli
from multipy.plugins import registry as registry_module
from multipy.plugins.contract import CLI_GROUP, DELEGATE_GROUP, IPAM_GROUP
from multipy.plugins.operator import Check
from multipy.plugins.registry import Registry

SCRIPT = Path(sys.executable).parent / "multipy"


@click.command("hello")
@click.argument("who")
def hello(who: str) -> None:
    """Say hello."""
    click.echo(f"hello {who}")


@click.command("validate")
def impostor() -> None:
    """Not multipy's validate."""
    click.echo("impostor")


@pytest.fixture
def commands(monkeypatch):
    """The CLI with these declared commands besides the installed ones."""

    def use(**declared):
        monkeypatch.setattr(cli, "registry", Registry(extra={CLI_GROUP: declared}))

    return use


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_help_lists_installed_and_declared_commands(commands):
    commands(hello=hello)
    result = invoke("--help")
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == ["daemon", "doctor", "hello", "install", "ipam", "status", "validate", "versions"]
    assert "kube-ipam's reservations" in result.stdout  # kube-ipam's group, as its entry point names it


def test_a_declared_command_runs(commands):
    commands(hello=hello)
    result = invoke("hello", "operator")
    assert (result.exit_code, result.stdout) == (0, "hello operator\n")


def test_a_built_in_command_keeps_its_name(commands):
    commands(validate=impostor)
    result = invoke("validate", "--help")
    assert result.exit_code == 0 and "Check a multus conf FILE" in result.stdout


def test_a_broken_or_wrong_declaration_names_itself_and_the_rest_still_works(monkeypatch, commands):
    commands(notacommand=object())
    result = invoke("notacommand")
    assert result.exit_code == 2
    assert "the multipy.cli entry point 'notacommand' is not a click command" in result.stderr
    scanned = {DELEGATE_GROUP: {}, IPAM_GROUP: {}, CLI_GROUP: {"broken": "no_such_package.cli:group"}}
    monkeypatch.setattr(registry_module, "_scan", lambda: scanned)
    monkeypatch.setattr(cli, "registry", Registry())
    result = invoke("--help")
    assert result.exit_code == 0 and "versions" in result.stdout
    assert "'broken' (no_such_package.cli:group) failed to load: ModuleNotFoundError" in result.stderr


def test_the_cli_imports_no_delegate_by_name():
    """Every module of multipy/cli, imported, and a command that needs no plugin, run: no delegate
    module is loaded (plugins are reached through the registry only, when a command needs one)."""
    code = (
        "import pkgutil, sys, importlib, multipy.cli\n"
        "from click.testing import CliRunner\n"
        "for module in pkgutil.iter_modules(multipy.cli.__path__):\n"
        "    importlib.import_module(f'multipy.cli.{module.name}')\n"
        "from multipy.cli.commands import cli\n"
        "CliRunner().invoke(cli, ['versions'])\n"
        "print(sorted(m for m in sys.modules if m == 'delegates' or m.startswith('delegates.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_ipam_command_runs_through_the_script(tmp_path):
    """`multipy ipam` reaches kube-ipam's cli module through the installed entry point."""
    out = subprocess.run([str(SCRIPT), "ipam", "--conf", str(tmp_path / "none.conf"), "ls"], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and "none.conf: cannot read" in out.stderr


# ---- status_checks


class Noisy:
    """A main plugin declaring two checks, one of them on a store several networks share."""

    seen: list = []

    @staticmethod
    def status_checks(conf, probe):
        Noisy.seen.append(conf)
        found = [Check("thing", f"{conf['name']}: {conf['thing']}", conf["thing"] != "bad", "looked")]
        if probe.first(("noisy store", conf["store"])):
            found.append(Check("store", conf["store"], True, f"probed within {probe.timeout:g} s"))
        return found


class Crashing:
    @staticmethod
    def status_checks(conf, probe):
        raise RuntimeError("oops")


class QuietIpam:
    """An IPAM plugin that only asks for the API of its kubeconfig, once per run."""

    @staticmethod
    def status_checks(conf, probe):
        api = probe.api(conf["ipam"]["kubeconfig"], f"{conf['name']}: ipam.kubeconfig")
        return [api] if api else []


def run_status(tmp_path, delegates, **top):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    doc = {"cniVersion": "1.0.0", "name": "multus", "type": "multus-cni", "binDir": str(bin_dir),
           "delegates": delegates, **top}  # fmt: skip
    extra = {DELEGATE_GROUP: {"noisy": Noisy, "crashing": Crashing, "plain": object},
             IPAM_GROUP: {"quiet": QuietIpam}}  # fmt: skip
    registry = Registry(extra=extra)
    Noisy.seen = []
    raw = json.dumps(doc).encode()
    return checks.run_all("conf", raw, lambda conf: checks.Resolver(conf, registry=registry, environ={}))


def test_declared_checks_run_per_plugin_with_its_conf_and_shared_things_once(tmp_path):
    found = run_status(tmp_path, [
        {"name": "a", "type": "noisy", "thing": "good", "store": "s1", "masterplugin": True},
        {"name": "b", "type": "noisy", "thing": "bad", "store": "s1"},
        {"name": "c", "type": "plain"},
    ])  # fmt: skip
    assert [(c.kind, c.subject, c.ok) for c in found if c.kind not in ("conf", "type")] == [
        ("thing", "a: good", True),
        ("store", "s1", True),
        ("thing", "b: bad", False),
    ]
    # As a runtime would hand it over: with the network's name and cniVersion.
    assert [(conf["name"], conf["cniVersion"]) for conf in Noisy.seen] == [("a", "1.0.0"), ("b", "1.0.0")]
    assert "probed within 2 s" in [c.detail for c in found if c.kind == "store"]


def test_a_crashing_hook_is_one_failed_line(tmp_path):
    found = run_status(tmp_path, [{"name": "a", "type": "crashing"}, {"name": "b", "type": "noisy", "thing": "x",
                                                                       "store": "s"}])  # fmt: skip
    crash = next(c for c in found if c.kind == "plugin")
    assert (crash.subject, crash.ok, crash.detail) == ("a: crashing", False, "status_checks failed: RuntimeError: oops")
    assert any(c.kind == "thing" for c in found)


def test_an_ipam_hook_shares_the_api_check_with_the_conf(tmp_path):
    missing = str(tmp_path / "nope.kubeconfig")
    other = str(tmp_path / "other.kubeconfig")
    found = run_status(tmp_path, [
        {"name": "a", "type": "plain", "ipam": {"type": "quiet", "kubeconfig": missing}},
        {"name": "b", "type": "plain", "ipam": {"type": "quiet", "kubeconfig": other}},
        {"name": "c", "type": "plain", "ipam": {"type": "quiet", "kubeconfig": other}},
    ], kubeconfig=missing)  # fmt: skip
    assert [(c.subject, c.ok) for c in found if c.kind == "api"] == [
        (f"kubeconfig {missing}", False),  # the conf's own, checked first; the first network's is the same
        (f"b: ipam.kubeconfig {other}", False),
    ]
