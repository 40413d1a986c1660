"""The pure packages import no torch, asyncio, sockets or web stacks (DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys

PURE_PACKAGES = ("core", "catalog", "perf", "workload", "planner", "policy", "sim")
BLOCKED = ("torch", "asyncio", "socket", "transformers", "aiohttp", "uvicorn", "fastapi", "threading_net")

PROBE = r"""
import importlib, pkgutil, sys
blocked = set(sys.argv[1].split(","))
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"pure package imported blocked module {name}")
        return None
for mod in list(sys.modules):
    if mod.split(".")[0] in blocked:
        del sys.modules[mod]
sys.meta_path.insert(0, Blocker())
import prfaas
for pkg in sys.argv[2].split(","):
    base = importlib.import_module(f"prfaas.{pkg}")
    for info in pkgutil.walk_packages(base.__path__, prefix=f"prfaas.{pkg}."):
        importlib.import_module(info.name)
print("ok")
"""


def test_pure_packages_import_without_torch_asyncio_or_sockets() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(BLOCKED), ",".join(PURE_PACKAGES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
