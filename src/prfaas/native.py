"""A compiled build of the simulator and its policy (mypyc): the same source, the same records, ~1.3x less CPU.

`build_native()` copies the installed `prfaas` package into a cache folder keyed by a digest of its sources
(and of the Python and mypy versions), compiles `NATIVE_PACKAGES` there with mypyc (C extension modules beside
the sources) and returns the folder: put it first on `PYTHONPATH` and every `prfaas` import in that process,
the simulator's included, loads the compiled modules (`prfaas native build` prints the folder). A changed
source is a new digest, so a stale build is never used. Nothing else changes: the pure-Python package stays the
default and the reference; `tests/sim/test_native_build.py` runs the same simulations both ways and compares
their records event by event.

Modules left interpreted, with the reason (mypyc compiles classes to native ones, which these cannot be):
see `NATIVE_EXCLUDED`. Needs mypy (the `dev` or `native` extra), a C compiler and the Python headers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from prfaas.core.errors import PrfaasError

NATIVE_PACKAGES = ("core", "perf", "policy", "sim")  # under prfaas/, every module but NATIVE_EXCLUDED
NATIVE_EXCLUDED: dict[str, str] = {
    "perf/base.py": "runtime-checkable Protocols (isinstance checks need interpreted Protocol classes)",
    "core/topology.py": "msgspec Structs (their fields are msgspec descriptors, not native attributes)",
    "sim/config.py": "msgspec Structs",
    "policy/cache_regime.py": "a config dataclass that takes a regime's name and converts it after __init__",
    "policy/types.py": "ClusterView, which sim.view subclasses with properties over its fields",
    "sim/view.py": "ClusterView subclasses, and the reference counts that decide when a view is sealed (release_view, "
                   "release_sites_view)",
}
_MARKER = "BUILT"  # written last into a finished build folder


class NativeBuildError(PrfaasError):
    """The compiled build could not be made (no mypy, no compiler, a compile error)."""


def package_root() -> Path:
    """The folder of the `prfaas` package this process imported."""
    return Path(__file__).resolve().parent


def native_modules(root: Path | None = None) -> list[str]:
    """The modules to compile, as paths relative to the package root (sorted)."""
    root = package_root() if root is None else root
    out = []
    for package in NATIVE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if path.name != "__init__.py" and rel not in NATIVE_EXCLUDED:
                out.append(rel)
    return out


def source_digest(root: Path | None = None) -> str:
    """sha256 over every source file of the package, the Python version and the mypy version (16 hex digits)."""
    root = package_root() if root is None else root
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    digest.update(_mypy_version().encode())
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".typed", ".toml", ".json") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _mypy_version() -> str:
    try:
        import mypy.version
    except ImportError:
        return "none"
    return str(mypy.version.__version__)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prfaas" / "native"


def native_dir(cache_dir: Path | None = None, *, opt_level: int = 3, root: Path | None = None) -> Path:
    """Where the build of the current sources lives (whether or not it was built)."""
    return (default_cache_dir() if cache_dir is None else cache_dir) / f"{source_digest(root)}-O{opt_level}"


def built_native_dir(cache_dir: Path | None = None, *, opt_level: int = 3, root: Path | None = None) -> Path | None:
    """The finished build of the current sources, or None."""
    where = native_dir(cache_dir, opt_level=opt_level, root=root)
    return where if (where / _MARKER).is_file() else None


def build_native(cache_dir: Path | None = None, *, opt_level: int = 3, force: bool = False,
                 root: Path | None = None) -> Path:
    """Compile (unless the current sources' build exists) and return the folder to put on `PYTHONPATH`.

    Builds in a temporary folder beside the target and moves it into place when the build finished, so an
    interrupted build leaves nothing that looks finished. mypyc's output goes to the build folder's `build.log`;
    a failure raises `NativeBuildError` naming a copy of it. `root`: the package to build (default: this one).
    """
    if opt_level not in (0, 1, 2, 3):
        raise NativeBuildError(f"opt_level must be 0-3, got {opt_level}")
    root = package_root() if root is None else root
    target = native_dir(cache_dir, opt_level=opt_level, root=root)
    if not force and (target / _MARKER).is_file():
        return target
    if shutil.which(os.environ.get("CC", "cc")) is None and shutil.which("gcc") is None:
        raise NativeBuildError("no C compiler found (install gcc) for the native build")
    if _mypy_version() == "none":
        raise NativeBuildError("the native build needs mypy: pip install 'prfaas[native]'")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        shutil.copytree(root, work / "prfaas", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        modules = [f"prfaas/{rel}" for rel in native_modules(work / "prfaas")]
        env = dict(os.environ, MYPYC_OPT_LEVEL=str(opt_level))
        env.pop("PYTHONPATH", None)
        log_path = work / "build.log"
        with open(log_path, "w") as out:
            result = subprocess.run([sys.executable, "-m", "mypyc", *modules], cwd=work, env=env,
                                    stdout=out, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            kept = target.parent / f"{target.name}-failed.log"
            shutil.copyfile(log_path, kept)
            raise NativeBuildError(f"mypyc failed (exit {result.returncode}); its output: {kept}")
        shutil.rmtree(work / "build", ignore_errors=True)
        (work / _MARKER).write_text(f"{len(modules)} modules, opt level {opt_level}\n")
        if target.exists():
            shutil.rmtree(target)
        try:
            work.rename(target)
        except OSError:
            if not (target / _MARKER).is_file():
                raise
            # another build of the same sources finished first: use it (this one is removed below)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return target


def default_opt_level() -> int:
    """The opt level `run_native` builds at: PRFAAS_NATIVE_OPT_LEVEL, else 3."""
    raw = os.environ.get("PRFAAS_NATIVE_OPT_LEVEL", "3")
    if raw not in ("0", "1", "2", "3"):
        raise NativeBuildError(f"PRFAAS_NATIVE_OPT_LEVEL must be 0-3, got {raw!r}")
    return int(raw)


def run_native(argv: list[str] | None = None) -> None:
    """Replace this process by the same command on the compiled build (built first if the sources changed); does
    nothing when it already runs compiled. `argv`: the command line to run again (default `sys.argv`)."""
    if is_native():
        return
    where = build_native(opt_level=default_opt_level())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(where), os.environ.get("PYTHONPATH")) if p))
    args = list(sys.argv if argv is None else argv)
    os.execve(sys.executable, [sys.executable, *args], env)


def is_native() -> bool:
    """Whether this process runs the compiled simulator (`prfaas.sim.simulator` is an extension module)."""
    import prfaas.sim.simulator as simulator

    return not str(simulator.__file__).endswith(".py")
