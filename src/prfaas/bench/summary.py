"""The summary of one run: counts, throughput, goodput under the SLO, TTFT/TPOT percentiles, routes, link.

    summary = summarize(records, link_samples, duration_s, Slo(ttft_s=5.0, tpot_s=0.2))
    summary_json(summary) / format_summary(summary)

Percentiles are nearest-rank over completed requests. Goodput counts completed requests that met every SLO
that is set (TTFT and TPOT), per second of the run. Link utilisation is goodput (or wire bytes with sites)
over the cap in force, averaged over the samples; `link_peak_utilisation` is the highest sample.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from prfaas.bench.records import LinkSample, RequestRecord, RequestStatus


@dataclass(frozen=True, slots=True)
class Slo:
    ttft_s: float | None = None
    tpot_s: float | None = None

    def met(self, record: RequestRecord) -> bool:
        if record.status is not RequestStatus.COMPLETED:
            return False
        if self.ttft_s is not None and (record.ttft_s is None or record.ttft_s > self.ttft_s):
            return False
        return not (self.tpot_s is not None and record.tpot_s is not None and record.tpot_s > self.tpot_s)


class Percentiles(msgspec.Struct, frozen=True, kw_only=True):
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None


class BenchSummary(msgspec.Struct, frozen=True, kw_only=True):
    sent: int
    completed: int
    failed: int
    lost: int
    failed_by_kind: dict[str, int]
    duration_s: float
    throughput_rps: float
    goodput_rps: float
    slo_ttft_s: float | None
    slo_tpot_s: float | None
    ttft_s: Percentiles
    tpot_s: Percentiles
    output_tokens_per_s: float
    requests_by_route: dict[str, int]
    ttft_mean_by_route_s: dict[str, float]
    kv_bytes: int  # prompt state moved for completed requests (cross-site and intra-PD)
    egress_bytes: int  # of which crossed the PrfaaS -> PD link (route prfaas)
    link_goodput_mean_gbps: float | None
    link_utilisation_mean: float | None
    link_peak_utilisation: float | None


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def percentiles(values: Sequence[float]) -> Percentiles:
    return Percentiles(mean=statistics.fmean(values) if values else None, p50=nearest_rank(values, 0.5),
                       p90=nearest_rank(values, 0.9), p99=nearest_rank(values, 0.99))


def _by_route(done: Sequence[RequestRecord]) -> tuple[dict[str, int], dict[str, float]]:
    counts: dict[str, int] = {}
    ttfts: dict[str, list[float]] = {}
    for r in done:
        route = r.route or "unknown"
        counts[route] = counts.get(route, 0) + 1
        if r.ttft_s is not None:
            ttfts.setdefault(route, []).append(r.ttft_s)
    return counts, {k: statistics.fmean(v) for k, v in ttfts.items()}


def _link(samples: Sequence[LinkSample]) -> tuple[float | None, float | None, float | None]:
    if not samples:
        return None, None, None
    utils = [u for u in (s.utilisation for s in samples) if u is not None]
    goodput = statistics.fmean(s.goodput_gbps for s in samples)
    return goodput, (statistics.fmean(utils) if utils else None), (max(utils) if utils else None)


def summarize(records: Sequence[RequestRecord], samples: Sequence[LinkSample], duration_s: float,
              slo: Slo = Slo()) -> BenchSummary:
    done = [r for r in records if r.status is RequestStatus.COMPLETED]
    failed = [r for r in records if r.status is RequestStatus.FAILED]
    kinds: dict[str, int] = {}
    for r in failed:
        key = r.failure.value if r.failure is not None else "unknown"
        kinds[key] = kinds.get(key, 0) + 1
    span = max(duration_s, 1e-9)
    routes, route_ttft = _by_route(done)
    goodput, util, peak = _link(samples)
    return BenchSummary(
        sent=len(records), completed=len(done), failed=len(failed),
        lost=sum(r.status is RequestStatus.LOST for r in records), failed_by_kind=kinds, duration_s=duration_s,
        throughput_rps=len(done) / span, goodput_rps=sum(slo.met(r) for r in records) / span,
        slo_ttft_s=slo.ttft_s, slo_tpot_s=slo.tpot_s,
        ttft_s=percentiles([r.ttft_s for r in done if r.ttft_s is not None]),
        tpot_s=percentiles([r.tpot_s for r in done if r.tpot_s is not None]),
        output_tokens_per_s=sum(r.completion_tokens for r in done) / span,
        requests_by_route=routes, ttft_mean_by_route_s=route_ttft,
        kv_bytes=sum(r.transfer_bytes for r in done),
        egress_bytes=sum(r.transfer_bytes for r in done if r.route == "prfaas"), link_goodput_mean_gbps=goodput,
        link_utilisation_mean=util, link_peak_utilisation=peak)


def _f(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def format_summary(s: BenchSummary, title: str = "run") -> str:
    routes = ", ".join(f"{k} {v} (TTFT {_f(s.ttft_mean_by_route_s.get(k))} s)"
                       for k, v in sorted(s.requests_by_route.items()))
    lines = [
        f"{title}: sent {s.sent}, completed {s.completed}, failed {s.failed}"
        f"{' ' + str(s.failed_by_kind) if s.failed_by_kind else ''}, lost {s.lost} in {s.duration_s:.1f} s",
        f"  throughput {s.throughput_rps:.3f} req/s, goodput {s.goodput_rps:.3f} req/s "
        f"(SLO TTFT {_f(s.slo_ttft_s, 'g')} s, TPOT {_f(s.slo_tpot_s, 'g')} s), {s.output_tokens_per_s:.1f} tok/s",
        f"  TTFT mean {_f(s.ttft_s.mean)} p50 {_f(s.ttft_s.p50)} p90 {_f(s.ttft_s.p90)} p99 {_f(s.ttft_s.p99)} s; "
        f"TPOT mean {_f(s.tpot_s.mean, '.4f')} p90 {_f(s.tpot_s.p90, '.4f')} s",
        f"  routes: {routes or '-'}; KV bytes {s.kv_bytes:,} (cross-site {s.egress_bytes:,})",
        f"  link goodput mean {_f(s.link_goodput_mean_gbps, '.4f')} Gbps, utilisation mean "
        f"{_f(s.link_utilisation_mean, '.1%')} peak {_f(s.link_peak_utilisation, '.1%')}",
    ]
    return "\n".join(lines)
