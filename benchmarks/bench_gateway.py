"""Gateway overhead and request rate, with the trivial stub model behind it (no torch in the nodes).

    python benchmarks/bench_gateway.py [--requests 300] [--runs 3] [--concurrency 32] [--rate-requests 1000]

Deployment: `prfaas up`'s processes (gateway, PrfaaS node, PD-P, PD-D) with `model.name = "stub"`.
- Overhead: the same colocated request (8 prompt tokens, `--max-tokens` tokens) done sequentially, alternating
  between (a) calling the PD-D node directly (POST /prefill keeping the state, then the /decode stream: the
  exact node calls the gateway makes) and (b) POST /v1/completions on the gateway with
  `x-prfaas-route: colocated`. Overhead = gateway latency - direct latency, at P50 and P99.
- Rate: `--concurrency` clients keep requests in flight (policy-routed: PD-P prefill, KV transfer, PD-D
  decode) until `--rate-requests` finished; requests/s.
Medians over `--runs` runs; everything shares this machine's cores with the client.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import msgspec

from prfaas.serve.config import ModelSection, PolicySection, default_config
from prfaas.serve.control_auth import ControlAuth, RefusalRecorder
from prfaas.serve.deploy_secrets import load_shared_secret
from prfaas.serve.launcher import Launcher
from prfaas.serve.messages import DecodeRequest, DecodeTarget, PrefillReply, PrefillRequest, SamplingMsg, encode

PROMPT = [11, 12, 13, 14, 15, 16, 17, 18]
_ids = itertools.count()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def direct_once(session: aiohttp.ClientSession, node: dict[str, object], max_tokens: int) -> float:
    rid = f"direct-{next(_ids)}"
    sampling = SamplingMsg(max_tokens=max_tokens, temperature=0.0)
    target = DecodeTarget(name=str(node["name"]), kv_host=str(node["host"]), kv_port=int(str(node["kv_port"])))
    url = f"http://{node['host']}:{node['port']}"
    start = time.perf_counter()
    msg = PrefillRequest(request_id=rid, token_ids=PROMPT, sampling=sampling, decode_target=target, route="bench")
    async with session.post(f"{url}/prefill", data=encode(msg)) as resp:
        reply = msgspec.json.decode(await resp.read(), type=PrefillReply)
    decode = DecodeRequest(request_id=rid, first_token=reply.first_token, num_prompt_tokens=len(PROMPT),
                           sampling=sampling)
    async with session.post(f"{url}/decode", data=encode(decode)) as resp:
        async for _line in resp.content:
            pass
    return time.perf_counter() - start


async def gateway_once(session: aiohttp.ClientSession, url: str, max_tokens: int, route: str | None) -> float:
    body = {"model": "default", "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0}
    headers = {"x-prfaas-route": route} if route else {}
    start = time.perf_counter()
    async with session.post(f"{url}/v1/completions", json=body, headers=headers) as resp:
        await resp.read()
        assert resp.status == 200, resp.status
    return time.perf_counter() - start


async def overhead_run(url: str, node: dict[str, object], requests: int, max_tokens: int, secret: bytes
                       ) -> tuple[list[float], list[float]]:
    """Direct calls are signed like the gateway's (`serve.control_auth`), so both paths pay for signing."""
    direct, gateway = [], []
    signing = ControlAuth(secret, RefusalRecorder()).client_middleware()
    async with aiohttp.ClientSession() as session, aiohttp.ClientSession(middlewares=(signing,)) as node_session:
        for _ in range(20):  # warm-up: connections, code paths
            await direct_once(node_session, node, max_tokens)
            await gateway_once(session, url, max_tokens, "colocated")
        for _ in range(requests):
            direct.append(await direct_once(node_session, node, max_tokens))
            gateway.append(await gateway_once(session, url, max_tokens, "colocated"))
    return direct, gateway


async def rate_run(url: str, total: int, concurrency: int, max_tokens: int) -> float:
    remaining = itertools.count()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def client() -> None:
            while next(remaining) < total:
                await gateway_once(session, url, max_tokens, None)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate-requests", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=4)
    args = parser.parse_args()
    cfg = default_config(model=ModelSection(name="stub"), policy=PolicySection(rebalance=False))
    with tempfile.TemporaryDirectory() as tmp, Launcher(cfg, Path(tmp)) as deployment:
        deployment.wait_ready(60)
        pd_d = next(n for n in deployment.cfg.nodes if n.name == "pd-1")
        node = {"name": pd_d.name, "host": pd_d.host, "port": pd_d.port, "kv_port": pd_d.kv_port}
        secret = load_shared_secret(deployment.cfg.transport, os.environ)
        rows = []
        for _ in range(args.runs):
            direct, gateway = asyncio.run(overhead_run(deployment.url, node, args.requests, args.max_tokens, secret))
            rate = asyncio.run(rate_run(deployment.url, args.rate_requests, args.concurrency, args.max_tokens))
            rows.append((percentile(direct, 0.5), percentile(gateway, 0.5), percentile(direct, 0.99),
                         percentile(gateway, 0.99), rate))
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(f"stub model, {args.requests} sequential requests x {args.runs} runs, max_tokens={args.max_tokens}; "
          f"rate: {args.concurrency} concurrent clients, {args.rate_requests} requests")
    print(f"{'metric':<40}{'direct node':>14}{'via gateway':>14}{'overhead':>12}")
    print(f"{'latency P50 (ms)':<40}{med[0] * 1e3:>14.2f}{med[1] * 1e3:>14.2f}{(med[1] - med[0]) * 1e3:>12.2f}")
    print(f"{'latency P99 (ms)':<40}{med[2] * 1e3:>14.2f}{med[3] * 1e3:>14.2f}{(med[3] - med[2]) * 1e3:>12.2f}")
    print(f"{'gateway requests/s (policy-routed)':<40}{'':>14}{med[4]:>14.1f}")
    print("per run (direct P50, gateway P50, direct P99, gateway P99 in ms; req/s):")
    for r in rows:
        print(f"  {r[0] * 1e3:7.2f} {r[1] * 1e3:7.2f} {r[2] * 1e3:7.2f} {r[3] * 1e3:7.2f} {r[4]:8.1f}")


if __name__ == "__main__":
    main()
