"""The live request path's own cost, measured, and the simulator with it (`bench paper`'s "sim+overhead").

    points = overhead_points(probe_dir)        # (prompt tokens, live TTFT - (queue + prefill + transfer)) per request
    overhead = fit_overhead(points)            # RequestOverhead(fixed_s, per_token_s): binned medians, least squares
    run = simulate_with_overhead(c, scale, requests, duration_s, tail_s, overhead)

What the emulated engine makes exact (prefill = the profile's T(l) x k_t within a few ms, the last layer's
transfer a few ms after it) leaves one difference between a live TTFT and the simulator's: the request path
outside the model. Per request the gateway's log gives queue_s, prefill_s and transfer_s (the transfer's finish
after the prefill's end) and the client its TTFT; the rest is the path: the client's JSON of the token-id
prompt, HTTP, the gateway's parse / validation / block hashing / routing, the prefill call to the node, the
reply and the first SSE chunk. It grows with the prompt (JSON and hashing are per token), so it is measured as
fixed_s + per_token_s x l (least squares through the medians of length bins: robust to the shared machine's
outliers). The simulator then sees each request `overhead(l)` later (the path precedes the prefill) and reports
TTFT from the original arrival. Measured on a calibration run and reported with the result; not scaled by k_t
(it is real time on this machine, docs/emulated.md).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prfaas.bench.records import RequestStatus, read_records
from prfaas.workload import WorkloadRequest

LENGTH_BINS = (0, 4_000, 8_000, 16_000, 32_000, 64_000, 1 << 30)


@dataclass(frozen=True, slots=True)
class RequestOverhead:
    """overhead(l) = fixed_s + per_token_s x l, plus (for a request id) one of the calibration's residuals: the
    line gives the typical path, the residuals its measured spread (a shared machine's tail), so the simulated
    mean and P90 both carry it. The residual a request gets is a fixed function of its id (deterministic)."""

    fixed_s: float = 0.0
    per_token_s: float = 0.0
    num_points: int = 0
    residuals_s: tuple[float, ...] = ()

    def at(self, num_tokens: float, request_id: int | None = None) -> float:
        base = self.fixed_s + self.per_token_s * num_tokens
        if request_id is not None and self.residuals_s:
            base += self.residuals_s[(request_id * 2654435761) % len(self.residuals_s)]
        return max(base, 0.0)

    def describe(self) -> str:
        spread = ""
        if self.residuals_s:
            res = np.array(self.residuals_s)
            p90_ms = float(np.percentile(res, 90)) * 1e3
            spread = f", residual mean {float(res.mean()) * 1e3:+.1f} ms, P90 {p90_ms:+.1f} ms"
        return (f"{self.fixed_s * 1e3:.1f} ms + {self.per_token_s * 1e6:.2f} us/token{spread} "
                f"(measured on {self.num_points} requests)")


def overhead_points(probe_dir: Path) -> list[tuple[int, float]]:
    """(prompt tokens, path overhead s) of every completed request of one probe folder (`bench.paper` layout:
    the probe's records.jsonl, the deployment's gateway-requests.jsonl one folder up)."""
    records = {r.gateway_id: r for r in read_records(probe_dir / "records.jsonl")
               if r.status is RequestStatus.COMPLETED and r.ttft_s is not None}
    log_path = probe_dir.parent / "gateway-requests.jsonl"
    out = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        rec = records.get(row.get("id"))
        if rec is None or rec.ttft_s is None or row.get("prefill_s") is None:
            continue
        inside = float(row.get("queue_s") or 0.0) + float(row["prefill_s"]) + float(row.get("transfer_s") or 0.0)
        out.append((int(row["prompt_tokens"]), rec.ttft_s - inside))
    return out


def fit_overhead(points: Sequence[tuple[int, float]]) -> RequestOverhead:
    if not points:
        return RequestOverhead()
    xs = np.array([p[0] for p in points], dtype=np.float64)
    ys = np.array([p[1] for p in points], dtype=np.float64)
    bx, by = [], []
    for lo, hi in itertools.pairwise(LENGTH_BINS):
        mask = (xs >= lo) & (xs < hi)
        if mask.sum() >= 3:
            bx.append(float(np.median(xs[mask])))
            by.append(float(np.median(ys[mask])))
    intercept, slope = float(np.median(ys)), 0.0
    if len(bx) >= 2:
        fitted_slope, fitted_intercept = np.polyfit(bx, by, 1)
        if fitted_slope >= 0:
            intercept, slope = float(fitted_intercept), float(fitted_slope)
    residuals = tuple(float(r) for r in ys - (intercept + slope * xs))
    return RequestOverhead(intercept, slope, len(points), residuals)


def shifted(requests: Sequence[WorkloadRequest], overhead: RequestOverhead,
            residual_key: Mapping[int, int] | None = None) -> list[WorkloadRequest]:
    """Each request as the prefill side first sees it: `overhead(l)` after its arrival, order kept by time.
    `residual_key[request_id]`: the id that picks its residual (default the request id itself; a prediction that
    renumbers requests passes a stable one, so that the same request gets the same residual in every run)."""
    moved = [dataclasses.replace(r, arrival_s=r.arrival_s + overhead.at(
        r.input_tokens, r.request_id if residual_key is None else residual_key[r.request_id])) for r in requests]
    return sorted(moved, key=lambda r: r.arrival_s)


def overhead_from(paper_dir: Path, *, configuration: str = "*", kind: str = "*",
                  exclude_run: int | None = None) -> RequestOverhead:
    """The overhead fitted to the probes of a finished `bench paper` output (its calibration run): all of them,
    or one configuration's (its folder name) / one kind's (capacity, common, ...), leaving out run
    `exclude_run` (cross-validation: a run is never predicted with its own measurements)."""
    points: list[tuple[int, float]] = []
    for records in sorted(paper_dir.glob(f"{configuration}/run-*/{kind}-*/records.jsonl")):
        if exclude_run is not None and records.parent.parent.name == f"run-{exclude_run}":
            continue
        points += overhead_points(records.parent)
    if not points:
        raise ValueError(f"no bench paper probes under {paper_dir} (configuration {configuration}, kind {kind}, "
                         f"leaving out run {exclude_run})")
    return fit_overhead(points)


MIN_CROSS_POINTS = 30  # fewer points from a configuration's other runs: fit on every configuration's instead


def cross_run_overhead(paper_dir: Path, configuration_dir: str, kind: str, run: int) -> RequestOverhead:
    """The overhead a probe is predicted with under cross-validation: fitted on the same configuration's and
    kind's probes of the OTHER runs (same deployment, same load, other seeds), or on every configuration's
    probes of that kind in the other runs when those are too few."""
    try:
        own = overhead_from(paper_dir, configuration=configuration_dir, kind=kind, exclude_run=run)
        if own.num_points >= MIN_CROSS_POINTS:
            return own
    except ValueError:
        pass
    return overhead_from(paper_dir, kind=kind, exclude_run=run)
