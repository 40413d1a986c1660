"""Every process a launcher starts exits when the launcher dies, however it dies (SIGKILL, OOM, a closed terminal).

Launcher side:

    lifeline = Lifeline()                       # a pipe; the launcher holds the write end and never writes to it
    subprocess.Popen(cmd, env={**env, **lifeline.child_env()}, pass_fds=lifeline.pass_fds, ...)
    lifeline.close()                            # after its children have stopped

Child side, first thing in `python -m prfaas.serve.main`:

    watch_launcher()                            # no-op without the launcher's environment variables

Two mechanisms, so that either alone is enough:

1. Linux: `prctl(PR_SET_PDEATHSIG, SIGTERM)`: the kernel sends SIGTERM when the parent dies. It is armed only if
   the parent is still the launcher's pid (it may have died between fork and prctl; then the pipe reports it at
   once) and only when the launcher spawned from its main thread (the signal follows the spawning *thread*).
2. Portable: a daemon thread blocks reading the inherited pipe. EOF means every copy of the write end is closed:
   the launcher is gone. The child then sends itself SIGTERM (unless the kernel already did), which runs its own
   graceful shutdown (a node stops and frees its ports; uvicorn closes the gateway), and exits hard if it is still
   alive `grace_s` later.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import MutableMapping

ENV_FD = "PRFAAS_LAUNCHER_FD"  # the read end of the lifeline pipe, inherited through pass_fds
ENV_PID = "PRFAAS_LAUNCHER_PID"  # the launcher's pid (only when PR_SET_PDEATHSIG may be armed)
PR_SET_PDEATHSIG = 1
DEFAULT_GRACE_S = 15.0

log = logging.getLogger(__name__)


class Lifeline:
    """The launcher's end: a pipe whose write end closes when the launcher process ends."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()  # non-inheritable: only pass_fds hands the read end on

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self._read_fd,) if self._read_fd >= 0 else ()

    def child_env(self) -> dict[str, str]:
        if self._read_fd < 0:
            raise RuntimeError("lifeline already closed")
        env = {ENV_FD: str(self._read_fd)}
        if threading.current_thread() is threading.main_thread():
            env[ENV_PID] = str(os.getpid())
        return env

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            if fd >= 0:
                os.close(fd)
        self._read_fd = self._write_fd = -1


def _arm_parent_death_signal(launcher_pid: int) -> bool:
    """Linux only: SIGTERM this process when its parent dies; True if armed and the parent is the launcher."""
    if not sys.platform.startswith("linux"):
        return False
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != launcher_pid:  # parent died before prctl (or a wrapper sits in between): disarm
        libc.prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0)
        return False
    return True


def _watch_pipe(fd: int, signal_self: bool, grace_s: float) -> None:
    while True:
        try:
            if os.read(fd, 1) == b"":
                break
        except InterruptedError:
            continue
        except OSError:
            return
    log.warning("the launcher is gone; stopping")
    if signal_self:
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    log.error("still running %.0f s after the launcher died; exiting", grace_s)
    os._exit(1)


def watch_launcher(environ: MutableMapping[str, str] | None = None, grace_s: float = DEFAULT_GRACE_S) -> bool:
    """Tie this process's life to the launcher named in `environ` (default os.environ; the variables are removed
    so that processes this one starts do not inherit them). Returns whether a launcher is watched."""
    env = os.environ if environ is None else environ
    fd_text, pid_text = env.pop(ENV_FD, None), env.pop(ENV_PID, None)
    if fd_text is None:
        return False
    armed = _arm_parent_death_signal(int(pid_text)) if pid_text else False
    fd = int(fd_text)
    try:
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        is_pipe = False
    if not is_pipe:  # a wrapper closed it: only the death signal (if armed) is left
        log.warning("launcher pipe fd %d not inherited; parent-death signal %s", fd, "armed" if armed else "off")
        return armed
    threading.Thread(target=_watch_pipe, args=(fd, not armed, grace_s), name="launcher-lifeline",
                     daemon=True).start()
    return True
