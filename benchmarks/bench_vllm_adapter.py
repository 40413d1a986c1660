"""What the gateway + vLLM adapter nodes add to a request, against fake vLLM instances that compute nothing.

    python benchmarks/bench_vllm_adapter.py [--requests 40] [--runs 3] [--prompt-tokens 1000] [--max-tokens 16]

Starts three fake vLLMs (tests/serve/fake_vllm.py: instant tokens, the prfaas kv_transfer_params checked) and a
loopback deployment of the real gateway and three adapter processes (`serve.vllm_node`) in front of them. Per run,
`--requests` sequential requests of each kind:

    direct        one non-streaming completion straight to a fake vLLM (what a client of vLLM alone would pay)
    colocated     through the gateway, forced colocated (adapter: one streaming completion)
    prfaas        through the gateway, forced PrfaaS route (prefill call on one fake, streaming decode on another)

Prints per kind the median and the p10-p90 spread of the request latency (ms), then the medians of the per-run
medians and their range across runs, and the overhead over `direct`. Nothing is computed by the fakes, so the
numbers are our HTTP/JSON and routing cost alone; with a real vLLM they add to its prefill and decode time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "serve"))

from fake_vllm import FakeCluster, FakeVllm

from prfaas.serve.config import free_port, load_config
from prfaas.serve.launcher import Launcher

NODES = (("prfaas-0", "prfaas", "prfaas_prefill"), ("pd-0", "pd", "pd_prefill"), ("pd-1", "pd", "pd_decode"))


def _toml(fakes: dict[str, FakeVllm]) -> str:
    text = ('[model]\nnum_layers = 4\nhidden_size = 128\n[gateway]\nport = 0\nheartbeat_interval_s = 0.5\n'
            '[policy]\nthreshold_tokens = 256\nrebalance = false\n')
    for name, cluster, role in NODES:
        fake = fakes[name]
        text += (f'[[nodes]]\nname = "{name}"\ncluster = "{cluster}"\nrole = "{role}"\nengine = "vllm"\n'
                 f'vllm_url = "{fake.url}"\nkv_port = {fake.kv_port}\n')
    return text


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> float:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as resp:
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url} answered {resp.status}")
    return (time.perf_counter() - start) * 1000


def _one_run(gateway: str, direct: str, args: argparse.Namespace, salt: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"direct": [], "colocated": [], "prfaas": []}
    for i in range(args.requests):
        prompt = [100 + (j * 7 + i * 13 + salt) % 800 for j in range(args.prompt_tokens)]
        base = {"prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0}
        out["direct"].append(_post(f"{direct}/v1/completions", {**base, "model": "fake-model",
                                                                 "return_token_ids": True}))
        for route in ("colocated", "prfaas"):
            out[route].append(_post(f"{gateway}/v1/completions", {**base, "model": "default"},
                                    {"x-prfaas-route": route}))
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    cluster = FakeCluster()
    fakes = {name: FakeVllm(cluster, kv_port=free_port()).start() for name, _c, _r in NODES}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "deploy.toml"
            path.write_text(_toml(fakes), encoding="utf-8")
            with Launcher(load_config(path), Path(tmp) / "run") as launcher:
                launcher.wait_ready(timeout_s=120)
                _one_run(launcher.url, fakes["pd-1"].url, argparse.Namespace(**{**vars(args), "requests": 3}), 0)
                medians: dict[str, list[float]] = {"direct": [], "colocated": [], "prfaas": []}
                for run in range(args.runs):
                    result = _one_run(launcher.url, fakes["pd-1"].url, args, run + 1)
                    for kind, values in result.items():
                        medians[kind].append(statistics.median(values))
                        print(f"run {run + 1} {kind:>9}: median {statistics.median(values):7.2f} ms  "
                              f"p10-p90 {_pct(values, 0.1):7.2f}-{_pct(values, 0.9):7.2f} ms")
    finally:
        for fake in fakes.values():
            fake.close()
    print(f"\n{args.runs} runs x {args.requests} requests, prompt {args.prompt_tokens} tokens, "
          f"{args.max_tokens} output tokens (median of run medians, range across runs)")
    direct = statistics.median(medians["direct"])
    for kind, values in medians.items():
        extra = "" if kind == "direct" else f"  (+{statistics.median(values) - direct:.2f} ms over direct)"
        print(f"{kind:>9}: {statistics.median(values):7.2f} ms  [{min(values):.2f}-{max(values):.2f}]{extra}")


if __name__ == "__main__":
    main()
