"""The one undo stack: what an ADD did, undone newest first if it fails.

Every native delegate and the orchestrator's rollback use it, so "a failure after
step N undoes steps N-1..1, and the undo's own failures reach the runtime" is
written once:

    with Undo() as undo:
        link = create_link()
        undo.push(delete_link, link, what=f"deleting {link}")
        ipam_add()                      # raises: delete_link runs, then the error propagates

An undo step that fails does not stop the others. Its failure is recorded in
`undo.failures` and, when the error being propagated is a CNIError, appended to its
`details` as `rollback incomplete: ...`: the one place that wording is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import CNIError


@dataclass
class UndoFailure:
    what: str
    error: BaseException
    tag: Any = None  # whatever the pusher attached, e.g. the orchestrator's attachment


@dataclass
class _Step:
    fn: Callable[..., Any]
    args: tuple
    kwargs: dict
    what: str
    tag: Any = None


def add_details(error: BaseException, text: str) -> None:
    """Append `text` to a CNIError's details (other exceptions carry no details)."""
    if isinstance(error, CNIError) and text:
        error.details = "; ".join(filter(None, [error.details, text]))


def describe(error: BaseException) -> str:
    return error.msg if isinstance(error, CNIError) else f"{type(error).__name__}: {error}"


@dataclass
class Undo:
    """A stack of undo steps; run newest first when the `with` block raises, dropped when it does not."""

    steps: list[_Step] = field(default_factory=list)
    failures: list[UndoFailure] = field(default_factory=list)

    def push(self, fn: Callable[..., Any], *args: Any, what: str = "", tag: Any = None, **kwargs: Any) -> None:
        self.steps.append(_Step(fn, args, kwargs, what or getattr(fn, "__name__", "undo"), tag))

    def run(self) -> list[UndoFailure]:
        """Run every step now, newest first, past failures; the stack is empty afterwards."""
        failures: list[UndoFailure] = []
        while self.steps:
            step = self.steps.pop()
            try:
                step.fn(*step.args, **step.kwargs)
            except Exception as exc:  # noqa: BLE001 - every step gets its chance; the cause's error wins
                failures.append(UndoFailure(step.what, exc, step.tag))
        self.failures += failures
        return failures

    def __enter__(self) -> Undo:
        return self

    def unwind(self, error: BaseException) -> list[UndoFailure]:
        """Run every step because `error` happened (what `with` does on a raise, for callers
        that must act between the failure and the undo); `error`'s details name what failed."""
        failures = self.run()
        if failures:
            add_details(error, "rollback incomplete: " + "; ".join(f"{f.what}: {describe(f.error)}" for f in failures))
        return failures

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.steps.clear()
            return False
        self.unwind(exc)
        return False
