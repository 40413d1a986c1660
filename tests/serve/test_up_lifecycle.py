"""Everything a launcher starts exits when the launcher dies, and SIGINT stops `prfaas up` however it was started.

- `prfaas up` SIGKILLed: its gateway and nodes (each in its own session) notice and stop; no process left, ports freed.
- `prfaas up` as a background job of a non-interactive shell (SIGINT inherited as ignored): SIGINT stops it and all
  its processes; the default run folder is in the per-user state directory, never the current directory.
- The lifeline alone (no parent-death signal): closing its pipe stops a child; a child that ignores SIGTERM
  is ended after the grace period.

Processes are found through /proc (Linux). Bounds are generous anti-hang timeouts, not speed checks.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from serve_helpers import get_json

from prfaas.serve.lifeline import ENV_FD, ENV_PID, Lifeline
from prfaas.transport.ports import free_port

pytestmark = [pytest.mark.network, pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")]

STUB_TOML = """
[model]
name = "stub"

[gateway]
heartbeat_interval_s = 0.2
"""
GONE_TIMEOUT_S = 30.0  # anti-hang bound: the children usually go within a second or two
READY_TIMEOUT_S = 120.0


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")  # a zombie has exited (its reaper may be slow)


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid and _alive(int(entry.name)):
                kids.append(int(entry.name))
    return kids


def _wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _sigint_ignored(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    raise AssertionError("no SigIgn line")


def _wait_ready(url: str, proc_alive: Callable[[], bool], log: Path | None = None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc_alive(), log.read_text() if log and log.exists() else "prfaas up exited"
        try:
            health = get_json(f"{url}/health")
            if health.get("ready") and sum(1 for n in health["nodes"].values() if n.get("up")) == 3:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"deployment not ready after {READY_TIMEOUT_S:.0f}s")


def _deployment_ports(run_dir: Path, gateway_port: int) -> list[int]:
    resolved = json.loads((run_dir / "config.json").read_text())
    return [gateway_port, *(n["port"] for n in resolved["nodes"]), *(n["kv_port"] for n in resolved["nodes"])]


def _assert_all_gone(pids: list[int], ports: list[int]) -> None:
    assert _wait_until(lambda: not any(_alive(p) for p in pids), GONE_TIMEOUT_S), \
        f"still running: {[p for p in pids if _alive(p)]}"
    assert _wait_until(lambda: not any(_port_open(p) for p in ports), GONE_TIMEOUT_S), \
        f"still open: {[p for p in ports if _port_open(p)]}"


def _stub_config(tmp_path: Path) -> Path:
    config = tmp_path / "stub.toml"
    config.write_text(STUB_TOML, encoding="utf-8")
    return config


def test_sigkilled_launcher_leaves_no_process_behind(tmp_path: Path) -> None:
    port, run_dir = free_port(), tmp_path / "run"
    up_log = tmp_path / "up.log"  # what `prfaas up` itself printed: the reason if it exits before it is ready
    with open(up_log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prfaas.cli", "up", "--config", str(_stub_config(tmp_path)), "--port", str(port),
             "--run-dir", str(run_dir)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    children: list[int] = []
    try:
        _wait_ready(f"http://127.0.0.1:{port}", lambda: proc.poll() is None, up_log)
        children = _children(proc.pid)
        assert len(children) == 4  # gateway + 3 nodes
        ports = _deployment_ports(run_dir, port)
        proc.kill()
        proc.wait(10)
        _assert_all_gone(children, ports)
        for name in ("gateway", "prfaas-0", "pd-0", "pd-1"):  # each ran its own shutdown to the end
            assert f"{'gateway' if name == 'gateway' else 'node ' + name} stopped" in \
                (run_dir / f"{name}.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in children:  # never leave a deployment behind, even when the test fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigint_stops_a_background_job_of_a_script(tmp_path: Path) -> None:
    port, state, cwd = free_port(), tmp_path / "state", tmp_path / "cwd"
    cwd.mkdir()
    log = tmp_path / "up.log"
    # a non-interactive shell starts background jobs with SIGINT (and SIGQUIT) ignored; `sleep` shows it does
    script = ('sleep 300 & echo $!; "$@" >"$UP_LOG" 2>&1 & echo $!; wait $!; echo "status $?"')
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_STATE_HOME": str(state), "UP_LOG": str(log)}
    shell = subprocess.Popen(
        ["bash", "-c", script, "bash", sys.executable, "-m", "prfaas.cli", "up", "--config",
         str(_stub_config(tmp_path)), "--port", str(port)],
        cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    assert shell.stdout is not None
    sleeper, up_pid = int(shell.stdout.readline()), int(shell.stdout.readline())
    children: list[int] = []
    try:
        # read once it is `sleep` (right after the fork, the shell has not set the dispositions yet)
        assert _wait_until(lambda: Path(f"/proc/{sleeper}/comm").read_text().strip() == "sleep", 30)
        assert _sigint_ignored(sleeper)
        os.kill(sleeper, signal.SIGKILL)
        _wait_ready(f"http://127.0.0.1:{port}", lambda: _alive(up_pid), log)
        children = _children(up_pid)
        assert len(children) == 4
        run_dirs = list((state / "prfaas" / "runs").iterdir())
        assert len(run_dirs) == 1 and run_dirs[0].name.startswith("up-")
        assert f"(logs: {run_dirs[0]})" in log.read_text()
        assert list(cwd.iterdir()) == []  # nothing written where it was started
        ports = _deployment_ports(run_dirs[0], port)
        os.kill(up_pid, signal.SIGINT)
        assert _wait_until(lambda: not _alive(up_pid), GONE_TIMEOUT_S), "prfaas up ignored SIGINT"
        _assert_all_gone(children, ports)
        assert shell.stdout.readline().strip() == "status 0"
        assert "stopping ..." in log.read_text()
    finally:
        for pid in [sleeper, up_pid, *children]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        shell.wait(30)


CHILD = """
import os, signal, sys, time
from prfaas.serve.lifeline import watch_launcher
if sys.argv[1] == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(watch_launcher(grace_s=float(sys.argv[2])), flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize(("mode", "returncode"), [("default", -signal.SIGTERM), ("ignore-term", 1)])
def test_the_lifeline_pipe_alone_stops_a_child(mode: str, returncode: int) -> None:
    """Without the parent-death signal (no launcher pid given), the pipe's EOF is enough: SIGTERM to itself, and a
    hard exit after the grace period if SIGTERM does not end it."""
    lifeline = Lifeline()
    env = {**os.environ, **lifeline.child_env()}
    env.pop(ENV_PID, None)
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode, "1.0"], env=env, pass_fds=lifeline.pass_fds,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "True"
        assert child.poll() is None
        lifeline.close()  # what the launcher's death does to the pipe
        assert child.wait(GONE_TIMEOUT_S) == returncode
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def test_no_launcher_no_watch() -> None:
    env: dict[str, str] = {}
    from prfaas.serve.lifeline import watch_launcher

    assert watch_launcher(env) is False


def test_the_death_signal_is_offered_only_from_the_main_thread() -> None:
    """PR_SET_PDEATHSIG follows the thread that forked: a child spawned from a worker thread (a chaos restart runs
    in `asyncio.to_thread`) must not get it, or it would stop when that thread ends. The pipe still ties it."""
    lifeline = Lifeline()
    try:
        assert ENV_PID in lifeline.child_env()
        from_worker: dict[str, str] = {}
        worker = threading.Thread(target=lambda: from_worker.update(lifeline.child_env()))
        worker.start()
        worker.join(30)
        assert ENV_PID not in from_worker and ENV_FD in from_worker
    finally:
        lifeline.close()
