"""The pure packages import no torch, asyncio, sockets or web stacks (DESIGN.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PURE_PACKAGES = ("core", "catalog", "perf", "workload", "planner", "policy", "sim")
BLOCKED = ("torch", "asyncio", "socket", "transformers", "aiohttp", "uvicorn", "fastapi")

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


# Policy code takes time as an argument and reads no environment (STYLE.md §1, §2, §5): a source check, since
# the stdlib itself imports `time` and `threading` everywhere. The simulator may time its own wall clock.
SOURCE_PURE = ("core", "catalog", "perf", "workload", "planner", "policy")
FORBIDDEN = re.compile(r"^\s*(import|from)\s+(time|threading|multiprocessing|random)\b|os\.environ|os\.getenv",
                       re.MULTILINE)


def test_pure_packages_read_no_clock_threads_or_environment() -> None:
    src = Path(__file__).resolve().parents[2] / "src" / "prfaas"
    offenders = [
        f"{path.relative_to(src)}: {match.group(0).strip()}"
        for package in SOURCE_PURE
        for path in sorted((src / package).rglob("*.py"))
        for match in FORBIDDEN.finditer(path.read_text())
    ]
    assert offenders == []
