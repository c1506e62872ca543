"""Errors for bad input, and the fail/skip policy of the stages.

Every problem with user data is raised as :class:`InputError`, which names the
offending file and the reason.  The command line turns it into one line on
stderr and exit status 2.
"""

from __future__ import annotations

import os


class InputError(Exception):
    """Bad input: ``path`` is the file (or folder) at fault, ``reason`` says why."""

    def __init__(self, path, reason: str):
        self.path = os.fspath(path) if path is not None else "<input>"
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable, so an error raised in a worker process reaches the parent intact
        return (type(self), (self.path, self.reason))


class ErrorPolicy:
    """What a stage does with a bad item: ``fail`` (default) or ``skip``.

    With ``skip`` the error is recorded as ``{"id", "path", "reason"}`` and the
    stage goes on; the caller writes :attr:`skipped` next to its outputs.
    """

    def __init__(self, mode: str = "fail"):
        if mode not in ("fail", "skip"):
            raise InputError("params.yaml", f"on_error must be 'fail' or 'skip', not {mode!r}")
        self.mode = mode
        self.skipped: list[dict] = []

    def handle(self, item_id, error: InputError) -> None:
        if self.mode == "fail":
            raise error
        self.skipped.append({"id": item_id, "path": error.path, "reason": error.reason})

    def __repr__(self):
        return f"ErrorPolicy({self.mode!r}, skipped={len(self.skipped)})"
