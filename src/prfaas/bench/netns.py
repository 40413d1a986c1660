"""Small, checked wrappers over `ip netns` / `tc` and `setns(2)` (root only; EMULATION of two sites).

    with entered("prfaas_local_ab12"):          # this thread's sockets now live in that namespace
        urllib.request.urlopen("http://10.214.7.2:8000/health")

`entered` switches only the calling thread (network namespaces are per thread) and always switches back;
processes it starts inherit the namespace. Other helpers run one `ip`/`tc` command with a timeout and turn a
failure into `SiteError` with the command's stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator

from prfaas.core.errors import PrfaasError

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"
COMMAND_TIMEOUT_S = 20.0


class SiteError(PrfaasError):
    """The emulated sites could not be built, changed or removed."""


def can_emulate() -> tuple[bool, str]:
    """(True, "") when namespaces can be made here, else (False, the reason) for a clean skip."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return False, "network namespaces need Linux"
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return False, f"missing tools: {', '.join(missing)}"
    return True, ""


def run_cmd(*args: str, check: bool = True) -> str:
    """Run one ip/tc command; SiteError (with stderr) when it fails and `check`."""
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SiteError(f"{' '.join(args)}: {exc}") from None
    if check and proc.returncode != 0:
        raise SiteError(f"{' '.join(args)}: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    return proc.stdout


def namespace_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def pids_in(name: str) -> list[int]:
    """Processes living in namespace `name` (empty if it does not exist), never this process itself (whose
    main thread may have `entered` it)."""
    if not namespace_exists(name):
        return []
    out = run_cmd("ip", "netns", "pids", name, check=False)
    return [int(tok) for tok in out.split() if tok.isdigit() and int(tok) != os.getpid()]


def delete_namespace(name: str) -> None:
    """SIGKILL what still runs inside `name` (processes this benchmark started there), then delete it."""
    for pid in pids_in(name):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if namespace_exists(name):
        run_cmd("ip", "netns", "del", name, check=False)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise SiteError(f"setns failed: {os.strerror(errno)}")


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body with this thread in network namespace `name`; always return to the original one."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
    except OSError as exc:
        os.close(original)
        raise SiteError(f"no network namespace {name!r}: {exc}") from None
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(original)
    finally:
        os.close(target)
        os.close(original)
