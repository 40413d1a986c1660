"""Where commands put their run folders when no --run-dir / --out is given: a per-user state directory, never the
current directory.

    state_dir()               $XDG_STATE_HOME/prfaas, default ~/.local/state/prfaas (XDG Base Directory spec)
    new_run_dir("up")         <state_dir>/runs/up-20260102-030405 (a suffix -2, -3, ... if that exists); not created
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

ENV_STATE_HOME = "XDG_STATE_HOME"


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """prfaas's per-user state directory (relative XDG_STATE_HOME values are ignored, as the spec says)."""
    env = os.environ if environ is None else environ
    base = env.get(ENV_STATE_HOME, "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "prfaas"


def new_run_dir(prefix: str, environ: Mapping[str, str] | None = None) -> Path:
    """A fresh run folder path <state_dir>/runs/<prefix>-<local time>; the caller creates it when it writes."""
    base = state_dir(environ) / "runs" / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path
