"""Errors a command reports to its user (the message says what is wrong and what to do)."""

from __future__ import annotations

__all__ = ["CommandError", "UsageError"]


class CommandError(RuntimeError):
    """A command cannot run as asked; the message says what is wrong and what to do (exit code 1)."""

    exit_code = 1


class UsageError(CommandError):
    """An argument or setting names something that does not exist (exit code 2, like argparse)."""

    exit_code = 2
