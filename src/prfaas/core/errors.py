"""Typed errors shared by every package.

Errors are raised at boundaries (files, CLI, wire) and carry enough context for a one-line message.
"""

from __future__ import annotations


class PrfaasError(Exception):
    """Base of every error prfaas raises on purpose; the CLI prints these as one line."""


class ConfigError(PrfaasError):
    """A configuration value or data file is invalid. Names the file and, where known, the line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class UnknownNameError(PrfaasError):
    """A name (model, GPU, policy, scenario) is not known; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...]) -> None:
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")
        self.kind = kind
        self.name = name
        self.known = tuple(sorted(known))


class InfeasibleError(PrfaasError):
    """The requested operating point cannot be met (e.g. an SLO no batch size satisfies)."""
