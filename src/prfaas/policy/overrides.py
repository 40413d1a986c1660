"""Build a `PolicyConfig` from a config file's `[policy]` tables (used by the simulator and the gateway).

Each sub-config (`bandwidth`, `cache`, `rebalancer`, `node_select`, `failure`) takes a flat table of its
dataclass fields; unknown keys and invalid values raise `PolicyOverrideError` naming the dotted key, which
the file readers turn into a `file:line:` error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from prfaas.policy.config import PolicyConfig

POLICY_SUBCONFIGS = ("bandwidth", "cache", "rebalancer", "node_select", "failure")


class PolicyOverrideError(ValueError):
    """An override names an unknown key or gives an invalid value; `key` is the dotted path under `policy`."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def apply_policy_overrides(tables: Mapping[str, Mapping[str, Any] | None],
                           threshold_tokens: int | None = None) -> PolicyConfig:
    """The default `PolicyConfig` with each sub-table's fields replaced."""
    base = PolicyConfig()
    changes: dict[str, Any] = {}
    for name in POLICY_SUBCONFIGS:
        overrides = tables.get(name)
        if not overrides:
            continue
        current = getattr(base, name)
        known = {f.name for f in dataclasses.fields(current)}
        for key in overrides:
            if key not in known:
                raise PolicyOverrideError(f"policy.{name}.{key}", f"unknown key; known: {', '.join(sorted(known))}")
        try:
            changes[name] = dataclasses.replace(current, **overrides)
        except (TypeError, ValueError) as exc:
            raise PolicyOverrideError(f"policy.{name}", str(exc)) from None
    if threshold_tokens is not None:
        changes["threshold_tokens"] = threshold_tokens
    return dataclasses.replace(base, **changes)
