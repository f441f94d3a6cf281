"""Configuration problems: a JSON path, what is wrong, and the CNI error they make."""

from __future__ import annotations

from dataclasses import dataclass, field

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError


@dataclass(frozen=True)
class Problem:
    path: str  # JSONPath of the offending value, "$" for the document
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Findings:
    """What checking a conf found: its problems, and the confs in it that could not be checked."""

    problems: list[Problem] = field(default_factory=list)
    unchecked: list[Problem] = field(default_factory=list)  # each says why it was not checked

    def extend(self, other: Findings) -> None:
        self.problems += other.problems
        self.unchecked += other.unchecked


class ConfigError(CNIError):
    """Every problem found, so `validate` can list them and ADD can name the first."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        where = f"{source}: " if source else ""
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            INVALID_NETWORK_CONFIG,
            f"invalid network configuration: {where}{problems[0]}{more}",
            "; ".join(str(p) for p in problems[1:]),
        )
        self.problems = problems
        self.source = source  # the file the problems are in, when it is not the conf being loaded


def child(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"
