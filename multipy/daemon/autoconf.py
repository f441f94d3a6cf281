"""autoConf: the daemon keeps the node's CNI conf made from the node's primary conf.

Go Multus thick's `"multusConfigFile": "auto"`, made by the code `multipy install --auto` uses
(multipy/config/auto.py), in thick mode ("type": "multus-shim", "daemonSocketDir" this daemon's
socket dir unless the options say otherwise). The main loop calls `refresh` every second: the conf
is made again from the primary as it is then and written, by the same atomic writer as the
install, only when its bytes changed; the checks (`multipy validate`'s) run only on a conf not
checked before. A primary that is missing or broken leaves the conf as it is (never an empty file,
Multus #1155) and is logged once, not every second. The conf is never deleted, on SIGTERM or
otherwise (Multus #1527, #1468): pods created while the daemon is away still reach multipy, the shim
falling back to thin mode.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from multipy.config import auto, multus
from multipy.config.problems import ConfigError

SHIM = "multus-shim"
CONF_MODE = 0o600

# (path, data, mode) -> "created", "updated" or "unchanged": multipy.cli.install_files.place, handed in
# by `multipy daemon` (the CLI layer is above this one).
Writer = Callable[[str, bytes, int], str]


class AutoConf:
    def __init__(self, write: Writer, log, schema_for=None) -> None:
        self.write = write
        self.log = log
        self.schema_for = schema_for  # the registry's plugin schemas, as `multipy validate` checks a conf
        self._checked: bytes | None = None  # the last made conf that passed the checks
        self._failure: str | None = None  # the failure logged last: a broken primary is logged once

    def refresh(self, settings) -> str | None:
        """Make the conf and write it when it changed: the action, or None when off or failed (logged)."""
        if not settings.auto_conf:
            return None
        path = os.path.join(settings.cni_config_dir, settings.auto_conf_name)
        options = {"daemonSocketDir": settings.socket_dir, **settings.auto_conf_options}
        try:
            made = auto.from_conf_dir(settings.cni_config_dir, settings.auto_conf_name, SHIM, options,
                                      settings.auto_conf_primary or None)  # fmt: skip
            if made.data != self._checked:
                problems = multus.problems(made.doc, schema_for=self.schema_for)
                if problems:
                    raise ConfigError(problems, source=f"{path} (made from {made.primary})")
            action = self.write(path, made.data, CONF_MODE)
        except ConfigError as error:
            self._failed(f"{error.source}: " + "; ".join(str(problem) for problem in error.problems))
            return None
        except OSError as error:
            self._failed(f"cannot write {path}: {error.strerror}")
            return None
        self._checked, self._failure = made.data, None
        if action != "unchanged":
            self.log.info("autoConf: %s %s from %s", action, path, made.primary)
        return action

    def _failed(self, why: str) -> None:
        if why != self._failure:
            self.log.error("autoConf: %s; the conf stays as it was", why)
        self._failure = why
