"""`prfaas demo`: drive a mixed workload through a live deployment and compare with the predictions.

    report = asyncio.run(run_demo(url, DemoWorkload(...)))      # against a running `prfaas up`
    print(format_report(report))

Prompts are random token ids whose lengths follow a truncated log-normal around the offload threshold, so
some are offloaded to the PrfaaS node and some stay local; arrivals are Poisson. The live numbers come from
the gateway's request log (`/admin/requests`: route, reason, TTFT, bytes); the predictions from the
simulator and the planner run on a profile measured from that same log (`serve.predict`).
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from prfaas.core.errors import PrfaasError
from prfaas.serve.predict import LiveSetup, Prediction, plan_same, profile_from_records, simulate_same, write_profile


@dataclass(frozen=True, slots=True)
class DemoWorkload:
    num_requests: int = 30
    rate_rps: float = 1.0
    median_tokens: int = 800
    sigma: float = 1.0
    min_tokens: int = 64
    max_tokens: int = 4096
    output_tokens: int = 16
    vocab_size: int = 2048
    seed: int = 0

    @property
    def mu(self) -> float:
        return math.log(self.median_tokens)


@dataclass(frozen=True, slots=True)
class DemoReport:
    workload: DemoWorkload
    records: list[dict[str, Any]]
    duration_s: float
    cluster: dict[str, Any]
    predictions: list[Prediction]
    prediction_errors: list[str]


def sample_lengths(w: DemoWorkload) -> list[int]:
    rng = random.Random(w.seed)
    out: list[int] = []
    while len(out) < w.num_requests:
        n = int(rng.lognormvariate(w.mu, w.sigma))
        if w.min_tokens <= n <= w.max_tokens:
            out.append(n)
    return out


async def _one(session: aiohttp.ClientSession, url: str, prompt: list[int], max_tokens: int) -> int:
    body = {"model": "default", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    async with session.post(f"{url}/v1/completions", json=body, timeout=aiohttp.ClientTimeout(total=600)) as resp:
        await resp.read()
        return resp.status


async def drive(url: str, w: DemoWorkload) -> tuple[list[int], float]:
    rng = random.Random(w.seed + 1)
    lengths = sample_lengths(w)
    async with aiohttp.ClientSession() as session:
        tasks = []
        start = time.monotonic()
        for n in lengths:
            prompt = [rng.randrange(3, w.vocab_size) for _ in range(n)]
            tasks.append(asyncio.create_task(_one(session, url, prompt, w.output_tokens)))
            await asyncio.sleep(rng.expovariate(w.rate_rps))
        statuses = await asyncio.gather(*tasks)
        return list(statuses), time.monotonic() - start


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        if resp.status in (401, 403):
            raise PrfaasError(f"{url}: HTTP {resp.status}: the admin API needs the gateway's admin token "
                              "(prfaas demo --admin-token-file FILE; `prfaas up` prints where it is)")
        if resp.status != 200:
            raise PrfaasError(f"{url}: HTTP {resp.status}: {(await resp.read())[:200]!r}")
        return await resp.json()


async def run_demo(url: str, w: DemoWorkload, predict: bool = True,
                   admin_headers: Mapping[str, str] | None = None) -> DemoReport:
    """`admin_headers`: the gateway's admin token (its /admin/* log and cluster view need it)."""
    async with aiohttp.ClientSession(headers=dict(admin_headers or {})) as session:
        before = await _get(session, f"{url}/admin/requests")
        since = max((r["id"] for r in before), default=0)
        cluster = await _get(session, f"{url}/admin/cluster")
    statuses, duration_s = await drive(url, w)
    async with aiohttp.ClientSession(headers=dict(admin_headers or {})) as session:
        records = await _get(session, f"{url}/admin/requests?since={since}")
    predictions: list[Prediction] = []
    errors = [f"{statuses.count(s)} requests answered {s}" for s in sorted(set(statuses)) if s != 200]
    if predict:
        predictions, more = await asyncio.to_thread(_predict, records, cluster, w, duration_s)
        errors += more
    return DemoReport(w, records, duration_s, cluster, predictions, errors)


def live_setup(cluster: dict[str, Any], w: DemoWorkload, duration_s: float) -> LiveSetup:
    roles = [i["role"] for i in cluster["instances"] if i["is_up"]]
    link = cluster["links"].get("prfaas->pd") or {}
    return LiveSetup(policy=cluster["policy"], threshold_tokens=int(cluster["threshold_tokens"] or 0),
                     n_prfaas=roles.count("prfaas_prefill"), n_pd_prefill=roles.count("pd_prefill"),
                     n_pd_decode=roles.count("pd_decode"), link_gbps=float(link.get("capacity_gbps") or 10.0),
                     mu=w.mu, sigma=w.sigma, min_tokens=w.min_tokens, max_tokens=w.max_tokens,
                     output_tokens=w.output_tokens, rate_rps=w.rate_rps, duration_s=max(duration_s, 1.0),
                     max_batch=max((i["max_batch"] for i in cluster["instances"]), default=32), seed=w.seed)


def _predict(records: list[dict[str, Any]], cluster: dict[str, Any], w: DemoWorkload,
             duration_s: float) -> tuple[list[Prediction], list[str]]:
    setup = live_setup(cluster, w, duration_s)
    out: list[Prediction] = []
    errors: list[str] = []
    try:
        profile = profile_from_records(records, "live")
    except ValueError as exc:
        return [], [f"no profile: {exc}"]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_profile(profile, Path(tmp) / "live-profile.json")
        for name, fn in (("simulator", lambda: simulate_same(path, profile, setup)),
                         ("planner", lambda: plan_same(path, setup))):
            try:
                out.append(fn())
            except Exception as exc:  # a prediction is an extra; the live report stands without it
                errors.append(f"{name} prediction unavailable: {exc}")
    return out, errors


def _p90(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def live_prediction(records: list[dict[str, Any]], duration_s: float, threshold: float | None) -> Prediction:
    ttfts = [r["ttft_s"] for r in records if r.get("ttft_s") is not None]
    offloaded = sum(r.get("route") == "prfaas" for r in records)
    bytes_prfaas = sum(r.get("transfer_bytes", 0) for r in records if r.get("route") == "prfaas")
    return Prediction("live", statistics.fmean(ttfts) if ttfts else None, _p90(ttfts),
                      offloaded / len(records) if records else None, float(bytes_prfaas),
                      len(records) / duration_s if duration_s > 0 else None, threshold)


def format_report(report: DemoReport) -> str:
    w, records = report.workload, report.records
    lines = [f"demo: {len(records)} requests, {w.rate_rps:g} req/s Poisson, prompt median {w.median_tokens} "
             f"tokens (log-normal sigma {w.sigma:g}, [{w.min_tokens}, {w.max_tokens}]), {w.output_tokens} output "
             f"tokens; policy {report.cluster['policy']}, threshold {report.cluster['threshold_tokens']}", "",
             f"{'route':<11}{'requests':>9}{'ttft_mean_s':>13}{'ttft_p90_s':>12}{'kv_bytes':>14}    reasons"]
    for route in ("prfaas", "local", "colocated"):
        mine = [r for r in records if r.get("route") == route]
        if not mine:
            continue
        ttfts = [r["ttft_s"] for r in mine if r.get("ttft_s") is not None]
        reasons = sorted({str(r.get("reason")) for r in mine})
        lines.append(f"{route:<11}{len(mine):>9}{_fmt(statistics.fmean(ttfts) if ttfts else None, '.3f'):>13}"
                     f"{_fmt(_p90(ttfts), '.3f'):>12}{sum(r.get('transfer_bytes', 0) for r in mine):>14,}"
                     f"    {', '.join(reasons)}")
    live = live_prediction(records, report.duration_s, report.cluster.get("threshold_tokens"))
    lines += ["", f"{'':<11}{'ttft_mean_s':>13}{'ttft_p90_s':>12}{'offload':>9}{'egress_bytes':>14}"
                  f"{'req/s':>8}{'threshold':>11}"]
    for p in [live, *report.predictions]:
        label = p.source + (" (Λmax)" if p.source == "planner" else "")
        lines.append(f"{label:<11}{_fmt(p.ttft_mean_s, '.3f'):>13}{_fmt(p.ttft_p90_s, '.3f'):>12}"
                     f"{_fmt(p.offload_fraction, '.2f'):>9}{_fmt(p.egress_bytes, ',.0f'):>14}"
                     f"{_fmt(p.throughput_rps, '.2f'):>8}{_fmt(p.threshold_tokens, ',.0f'):>11}")
    lines += [f"note: {e}" for e in report.prediction_errors]
    return "\n".join(lines)
