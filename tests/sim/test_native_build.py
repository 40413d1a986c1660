"""The compiled build (`prfaas.native`, mypyc) runs the same simulations as the pure-Python package: every case
of the frozen-reference equivalence tests (two-site routers, failures, rebalancing, the 1,250-instance fleet;
multi-site degraded link, burst, killed site, the 4-site fleet) gives the same records, samples, link histories
and event counts, compared field by field with the references and exactly with the pure run.

The build takes a couple of minutes (opt level 0 here: the same C code, compiled faster); it is cached per source
digest under PRFAAS_NATIVE_CACHE_HOME when set (else a temporary folder of this session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_speed_equivalence import _first_difference

from prfaas.native import (
    NATIVE_EXCLUDED,
    NativeBuildError,
    build_native,
    built_native_dir,
    native_dir,
    native_modules,
    package_root,
    source_digest,
)

HERE = Path(__file__).parent
SRC = package_root().parent
REFERENCES = {"two_site": HERE / "fixtures" / "speed_reference.json",
              "multisite": HERE / "fixtures" / "multisite_speed_reference.json"}


def _run_cases(pythonpath: Path, out: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=f"{pythonpath}{os.pathsep}{HERE}")
    subprocess.run([sys.executable, str(HERE / "native_equivalence.py"), str(out)], env=env, check=True,
                   timeout=600)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


@pytest.fixture(scope="session")
def xdg_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XDG_CACHE_HOME whose prfaas/native holds the build (PRFAAS_NATIVE_CACHE_HOME keeps it across runs)."""
    cache = os.environ.get("PRFAAS_NATIVE_CACHE_HOME")
    return Path(cache) if cache else tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(scope="session")
def native_build(xdg_cache: Path) -> Path:
    return build_native(xdg_cache / "prfaas" / "native", opt_level=0)


@pytest.mark.slow
def test_the_compiled_simulator_gives_the_reference_records(native_build: Path, tmp_path: Path) -> None:
    pure = _run_cases(SRC, tmp_path / "pure.json")
    native = _run_cases(native_build, tmp_path / "native.json")
    assert pure["native"] is False and pure["simulator_file"].endswith(".py")
    assert native["native"] is True, native["simulator_file"]
    references = {kind: json.loads(path.read_text())["cases"] for kind, path in REFERENCES.items()}
    assert set(native["cases"]) == {f"{kind}/{name}" for kind, cases in references.items() for name in cases}
    for name, got in native["cases"].items():
        kind, case = name.split("/", 1)
        want = references[kind][case]
        assert want["records"], name
        diff = _first_difference(name, got, want)
        assert diff is None, f"compiled: {diff}"
        assert got == pure["cases"][name], f"{name}: the compiled and the pure run differ"


def test_every_listed_exclusion_exists_and_is_left_out() -> None:
    modules = native_modules()
    for rel in NATIVE_EXCLUDED:
        assert (package_root() / rel).is_file(), rel
        assert rel not in modules
    assert "sim/simulator.py" in modules and "policy/routers/prfaas.py" in modules
    assert not any(m.endswith("__init__.py") for m in modules)


def _tiny_package(root: Path, body: str) -> Path:
    pkg = root / "prfaas"
    (pkg / "core").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "units.py").write_text(body)
    return pkg


def test_the_digest_follows_the_sources_and_the_folder_names_the_opt_level(tmp_path: Path) -> None:
    pkg = _tiny_package(tmp_path, "X: int = 1\n")
    before = source_digest(pkg)
    (pkg / "core" / "units.py").write_text("X: int = 2\n")
    assert source_digest(pkg) != before
    assert native_dir(tmp_path, opt_level=0, root=pkg).name == f"{source_digest(pkg)}-O0"
    assert native_dir(tmp_path, opt_level=0, root=pkg) != native_dir(tmp_path, opt_level=3, root=pkg)
    assert built_native_dir(tmp_path, root=pkg) is None


def test_a_failed_build_says_where_its_log_is_and_leaves_no_finished_folder(tmp_path: Path) -> None:
    pkg = _tiny_package(tmp_path / "src", 'X: int = "not an int"\n')
    cache = tmp_path / "cache"
    with pytest.raises(NativeBuildError, match="mypyc failed") as err:
        build_native(cache, opt_level=0, root=pkg)
    log = Path(str(err.value).rsplit(": ", 1)[1])
    assert log.is_file() and "incompatible types" in log.read_text().lower()
    assert built_native_dir(cache, opt_level=0, root=pkg) is None
    assert [p.name for p in cache.iterdir()] == [log.name]  # the temporary build folder is gone


def test_a_finished_build_is_reused_without_compiling(tmp_path: Path) -> None:
    pkg = _tiny_package(tmp_path / "src", 'X: int = "would not compile"\n')
    done = native_dir(tmp_path / "cache", opt_level=0, root=pkg)
    done.mkdir(parents=True)
    (done / "BUILT").write_text("done\n")
    assert build_native(tmp_path / "cache", opt_level=0, root=pkg) == done  # no mypyc run: it would fail
    assert built_native_dir(tmp_path / "cache", opt_level=0, root=pkg) == done


def test_a_bad_opt_level_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NativeBuildError, match="opt_level"):
        build_native(tmp_path, opt_level=7)


def test_the_path_command_fails_until_the_sources_are_built(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    result = subprocess.run([sys.executable, "-m", "prfaas.cli", "native", "path", "--cache-dir", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 1 and "not built" in result.stderr
    built = tmp_path / native_dir(tmp_path).name
    built.mkdir()
    (built / "BUILT").write_text("done\n")
    result = subprocess.run([sys.executable, "-m", "prfaas.cli", "native", "path", "--cache-dir", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0 and result.stdout.strip() == str(built)


@pytest.mark.slow
def test_simulate_native_runs_the_compiled_build_with_the_same_output(native_build: Path, xdg_cache: Path) -> None:
    scenario = str(HERE / "scenarios" / "multisite_burst.toml")

    def simulate(*extra: str) -> tuple[dict[str, Any], str]:
        env = dict(os.environ, PYTHONPATH=str(SRC), XDG_CACHE_HOME=str(xdg_cache), PRFAAS_NATIVE_OPT_LEVEL="0")
        result = subprocess.run([sys.executable, "-m", "prfaas.cli", "simulate", "--config", scenario, "--json",
                                 *extra], capture_output=True, text=True, env=env, timeout=300, check=True)
        out: dict[str, Any] = json.loads(result.stdout)
        out.pop("wall_s")
        return out, result.stderr

    pure, pure_err = simulate()
    native, native_err = simulate("--native")
    assert "compiled build" not in pure_err
    assert f"on the compiled build ({native_build})" in native_err and "compiling" not in native_err
    assert native == pure and native["events"] > 1000
