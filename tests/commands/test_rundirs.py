"""Run folders default to the per-user state directory (XDG), never the current directory."""

from __future__ import annotations

from pathlib import Path

from prfaas.commands.rundirs import new_run_dir, state_dir


def test_state_dir_follows_xdg_state_home(tmp_path: Path) -> None:
    assert state_dir({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "prfaas"
    assert state_dir({}) == Path.home() / ".local" / "state" / "prfaas"
    assert state_dir({"XDG_STATE_HOME": "relative/dir"}) == Path.home() / ".local" / "state" / "prfaas"


def test_new_run_dir_is_fresh_and_not_created(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path)}
    first = new_run_dir("up", env)
    assert first.parent == tmp_path / "prfaas" / "runs" and first.name.startswith("up-")
    assert not first.exists()
    first.mkdir(parents=True)
    second = new_run_dir("up", env)
    assert second != first and not second.exists()
