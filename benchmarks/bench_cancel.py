"""How fast a request nobody waits for stops: client disconnect -> decode batch removal / prefill stop.

    python benchmarks/bench_cancel.py [--model tiny|stub] [--trials 10] [--max-tokens 3000]

Deployment: `prfaas up`'s processes (gateway, PrfaaS node, PD-P, PD-D) on loopback, debug hooks on. Per trial a
raw-socket client sends POST /v1/completions and closes its connection once the request is where the trial wants
it; the time is taken from the close to the node's `GET /tables` (signed, polled every 5 ms) showing it gone:
- decode, non-streamed and streamed: the request is in the PD-D node's running batch; until `running_batch` is 0;
- prefill running: a PrfaaS prefill stalled after its first layer (debug hook); until `live_attempts` is 0;
- prefill queued: a second prefill queued behind the stalled one; until `queued_jobs` is 0 and only the stalled
  attempt is alive.
Then a burst: `--burst` clients at once (half streamed) that all leave while the first ones decode. After the
trials and the burst every per-request table of every node must be empty (leak check); the RSS of every process
(`/proc/PID/status`) is shown warm-idle (after one request), peak (sampled during the burst) and after (5 s idle
once the tables are empty, after each of `--bursts` bursts: a high-water mark stays flat, a leak grows).
`tiny` is the default model
at 4 layers / hidden 128 (CPU); `stub` has no model (20 ms decode steps). Times include the 5 ms polling.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prfaas.serve.config import load_config
from prfaas.serve.control_auth import ControlAuth, RefusalRecorder
from prfaas.serve.deploy_secrets import load_shared_secret
from prfaas.serve.launcher import Launcher
from prfaas.serve.messages import NodeTables, decode

TOML = {
    "tiny": '[model]\nnum_layers = 4\nhidden_size = 128\n',
    "stub": '[model]\nname = "stub"\nstub_step_s = 0.02\n',
}
COMMON = """
[gateway]
port = 0
allow_debug_hooks = true
heartbeat_interval_s = 0.2

[policy]
rebalance = false
"""
HELD = ("live_attempts", "queued_jobs", "waiting_admissions", "running_batch", "decode_streams", "inbox_states",
        "inbox_bytes", "waiting_admission_bytes", "pending_allocations", "receiver_budget_used_bytes",
        "queued_tokens", "in_flight")


class Bench:
    def __init__(self, dep: Launcher) -> None:
        self.dep = dep
        self.auth = ControlAuth(load_shared_secret(dep.cfg.transport, {}), RefusalRecorder())
        self.port = int(dep.url.rsplit(":", 1)[1])

    def tables(self, name: str) -> NodeTables:
        node = self.dep.cfg.node(name)
        url = f"http://{node.host}:{node.port}/tables"
        request = urllib.request.Request(url, headers=self.auth.sign(url, "GET", b""))
        with urllib.request.urlopen(request, timeout=10) as resp:
            return decode(resp.read(), NodeTables)

    def send(self, body: dict[str, object], headers: dict[str, str] | None = None) -> socket.socket:
        payload = json.dumps(body).encode()
        lines = ["POST /v1/completions HTTP/1.1", "host: 127.0.0.1", "content-type: application/json",
                 f"content-length: {len(payload)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        return sock

    def complete(self, max_tokens: int) -> None:
        body = json.dumps({"model": "default", "prompt": list(range(5, 300)), "max_tokens": max_tokens}).encode()
        request = urllib.request.Request(f"{self.dep.url}/v1/completions", data=body,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as resp:
            resp.read()

    def wait(self, check: Callable[[], bool], timeout_s: float = 120.0) -> float:
        start = time.monotonic()
        while not check():
            if time.monotonic() - start > timeout_s:
                raise TimeoutError("the deployment did not get there in time")
            time.sleep(0.005)
        return time.monotonic() - start


def decode_trial(bench: Bench, max_tokens: int, stream: bool) -> float:
    sock = bench.send({"model": "default", "prompt": list(range(5, 60)), "max_tokens": max_tokens,
                       "temperature": 0, "stream": stream})
    bench.wait(lambda: bench.tables("pd-1").running_batch == 1)
    sock.close()
    return bench.wait(lambda: bench.tables("pd-1").running_batch == 0)


def prefill_trial(bench: Bench, max_tokens: int, trial: int) -> tuple[float, float]:
    headers = {"x-prfaas-route": "prfaas"}
    body = {"model": "default", "prompt": [5 + trial, *range(6, 200)], "max_tokens": max_tokens, "temperature": 0}
    stalled = bench.send(body, {**headers, "x-prfaas-debug-stall-s": "600"})
    bench.wait(lambda: bench.tables("prfaas-0").live_attempts == 1)
    queued = bench.send({**body, "prompt": [6 + trial, *range(7, 200)]}, headers)
    bench.wait(lambda: bench.tables("prfaas-0").queued_jobs == 1)
    queued.close()
    queued_s = bench.wait(lambda: (t := bench.tables("prfaas-0")).queued_jobs == 0 and t.live_attempts == 1)
    stalled.close()
    running_s = bench.wait(lambda: bench.tables("prfaas-0").live_attempts == 0)
    return running_s, queued_s


def rss_mib(dep: Launcher) -> dict[str, float]:
    out = {}
    for name, proc in dep.procs.items():
        with open(f"/proc/{proc.pid}/status", encoding="ascii") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        out[name] = kib / 1024
    return out


def burst(bench: Bench, clients: int, max_tokens: int, peak: dict[str, float]) -> None:
    socks = [bench.send({"model": "default", "prompt": [7 + i % 50, *range(8, 300)], "max_tokens": max_tokens,
                         "temperature": 0, "stream": i % 2 == 1}) for i in range(clients)]
    bench.wait(lambda: bench.tables("pd-1").running_batch >= 1)
    for _ in range(20):
        for name, mib in rss_mib(bench.dep).items():
            peak[name] = max(peak.get(name, 0.0), mib)
        time.sleep(0.05)
    for sock in socks:
        sock.close()


def summary(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"| {name} | {len(ms)} | {statistics.median(ms):.0f} | {max(ms):.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(TOML), default="tiny")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=3000)
    parser.add_argument("--burst", type=int, default=64)
    parser.add_argument("--bursts", type=int, default=3, help="bursts in a row (after: RSS after each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "deploy.toml").write_text(TOML[args.model] + COMMON, encoding="utf-8")
        with Launcher(load_config(root / "deploy.toml"), root / "run") as dep:
            dep.wait_ready(timeout_s=300)
            bench = Bench(dep)
            bench.complete(8)  # warm-up: one request that finishes
            time.sleep(2)
            idle = rss_mib(dep)
            rows = {"decode, non-streamed": [decode_trial(bench, args.max_tokens, False) for _ in range(args.trials)],
                    "decode, streamed": [decode_trial(bench, args.max_tokens, True) for _ in range(args.trials)]}
            prefills = [prefill_trial(bench, args.max_tokens, t) for t in range(args.trials)]
            rows["prefill running (stalled)"] = [p[0] for p in prefills]
            rows["prefill queued"] = [p[1] for p in prefills]
            peak: dict[str, float] = {}
            after: list[dict[str, float]] = []
            for _ in range(args.bursts):
                burst(bench, args.burst, args.max_tokens, peak)
                bench.wait(lambda: not any(getattr(bench.tables(n.name), f) for n in dep.cfg.nodes for f in HELD))
                time.sleep(5)  # the nodes trim their heap within 2-4 s of draining (`serve.memory`)
                after.append(rss_mib(dep))
            print(f"model {args.model}, max_tokens {args.max_tokens}: disconnect -> removal (ms, incl. 5 ms polling)")
            print("| where the request was | trials | median ms | max ms |\n|---|---|---|---|")
            for name, values in rows.items():
                print(summary(name, values))
            print(f"leak check: every node table empty after the trials and each of {args.bursts} bursts of "
                  f"{args.burst} clients")
            print("| process | RSS warm idle MiB | peak (bursts) MiB | after each burst MiB |\n|---|---|---|---|")
            for name in idle:
                each = " / ".join(f"{a[name]:.0f}" for a in after)
                print(f"| {name} | {idle[name]:.0f} | {peak.get(name, 0.0):.0f} | {each} |")


if __name__ == "__main__":
    main()
