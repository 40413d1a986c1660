"""The request path of a live multi-site run, measured before its load (`bench sites compare|chaos`).

    points = probe_regions(dep, num_per_region=6)     # per region: short requests one at a time, before the load
    overhead = fit_overhead(pooled(points))           # bench.paper_overhead: fixed_s + per_token_s x l + residuals
    prediction = predict_sites(topology, spec, result, overhead=overhead)   # the simulator with the path

What the simulator of `bench.sites_predict` leaves out is the live request path outside the model: the client's
JSON of the token-id prompt, HTTP, the region gateway's parsing, hashing, routing and site choice, the prefill
call to the node, the reply and the first SSE chunk (`bench.paper_overhead`'s docstring). Per request the region
gateway's log gives `queue_s`, `prefill_s` and `transfer_s`, the client its TTFT; the path is the rest:

    path_s = TTFT - (queue_s + prefill_s + transfer_s)

The probes are short prompts (below the offload threshold, so prefilled locally, no link in the way) at three
lengths, sent one at a time to each region's gateway from its namespace right after the deployment is ready and
before the load starts: the path on the deployment's own processes and this machine's load, not the model or
the queues. All regions' probes are pooled into one fit (one machine, one code path) and applied as measured,
in real seconds (not scaled by k_t, as in `bench paper-sim`); the number, its spread and the probe count are
written with the run (`overhead.json`). It is a measured parameter, not fitted to the run it predicts.

The probes see the path on an idle deployment. Under the load the same path is longer (8+ Python processes and
the load generator share the machine's cores): `cross_run_paths` measures it on the live requests themselves,
the same formula on every completed request of a run, and gives each run the fit of the *other* runs of the
same command (the same requests under another selector or fault), never its own. Both are reported.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prfaas.bench.loadgen import LoadOptions, drive
from prfaas.bench.netns import entered
from prfaas.bench.paper_overhead import RequestOverhead, fit_overhead
from prfaas.bench.records import RequestRecord, RequestStatus, node_side_s, with_log_rows
from prfaas.bench.workload import FIRST_TOKEN_ID, BenchRequest

PROBE_LENGTHS_TOKENS = (1_500, 5_000, 10_000)  # one per length bin of paper_overhead.LENGTH_BINS, all local
PROBE_VOCAB = 2048
PROBE_SALT = 7_000  # other token ids than any load request's (no prefix shared with the load)


def probe_requests(region_index: int, num_probes: int, max_tokens: int) -> list[BenchRequest]:
    """`num_probes` short prompts cycling through PROBE_LENGTHS_TOKENS, all sent at 0 (one at a time)."""
    rng = random.Random(PROBE_SALT + region_index)
    out = []
    for k in range(num_probes):
        length = PROBE_LENGTHS_TOKENS[k % len(PROBE_LENGTHS_TOKENS)]
        ids = tuple(rng.randrange(FIRST_TOKEN_ID, PROBE_VOCAB) for _ in range(length))
        out.append(BenchRequest(k, 0.0, ids, max_tokens))
    return out


def path_points(records: Sequence[RequestRecord], log: Sequence[Mapping[str, Any]]) -> list[tuple[int, float]]:
    """(prompt tokens, path s) of every completed record whose gateway log row has its prefill time."""
    points = []
    for rec, row in with_log_rows(records, log):
        if rec.status is not RequestStatus.COMPLETED or rec.ttft_s is None or row is None:
            continue
        inside_s = node_side_s(row)
        if inside_s is not None:
            points.append((rec.prompt_tokens, rec.ttft_s - inside_s))
    return points


@dataclass(frozen=True, slots=True)
class PathProbe:
    """What the probes measured: the points per region and the pooled fit; `sent_mono_s`: when each region's
    probes were sent (`time.monotonic()`): its gateway's offered-load meter counted them
    (`policy.region_load`), and so does the simulated gateway's (`arrivals_before`)."""

    points: dict[str, list[tuple[int, float]]]
    overhead: RequestOverhead
    sent_mono_s: dict[str, list[float]] = field(default_factory=dict)

    def arrivals_before(self, start_mono_s: float | None) -> dict[str, list[float]]:
        """Per region, its probes' send times relative to the load's start `start_mono_s` (negative; the load's
        clock): the arrivals its gateway's meter saw before the load. Empty when the start is unknown."""
        if start_mono_s is None:
            return {}
        return {k: [t - start_mono_s for t in v] for k, v in self.sent_mono_s.items()}

    def as_json(self, start_mono_s: float | None = None) -> dict[str, Any]:
        return {"fixed_s": self.overhead.fixed_s, "per_token_s": self.overhead.per_token_s,
                "num_points": self.overhead.num_points, "describe": self.overhead.describe(),
                "points": {k: [list(p) for p in v] for k, v in self.points.items()},
                "sent_before_load_s": self.arrivals_before(start_mono_s)}


def fit_probes(points: Mapping[str, Sequence[tuple[int, float]]],
               sent_mono_s: Mapping[str, Sequence[float]] | None = None) -> PathProbe:
    pooled = [p for region in points.values() for p in region]
    return PathProbe({k: list(v) for k, v in points.items()}, fit_overhead(pooled),
                     {k: list(v) for k, v in (sent_mono_s or {}).items()})


def probe_regions(dep: Any, num_per_region: int = 6) -> PathProbe:
    """Probe each region's gateway in turn from its namespace (`dep`: a `bench.sites_run.SitesDeployment`)."""
    opts = LoadOptions(max_concurrency=1, request_timeout_s=120.0)
    points: dict[str, list[tuple[int, float]]] = {}
    sent_mono_s: dict[str, list[float]] = {}
    for index, name in enumerate(dep.topology.pd_names):
        before = max((int(x["id"]) for x in dep.launcher.get(name, "/admin/requests") or []), default=0)
        requests = probe_requests(index, num_per_region, dep.spec.max_tokens)
        with entered(dep.sites.namespace(name)):
            start_mono_s = time.monotonic()  # the drive's clock starts right after (send_s counts from it)
            records = asyncio.run(drive(dep.launcher.region_url(name), requests, opts))
        sent_mono_s[name] = [start_mono_s + rec.send_s for rec in records]
        log = dep.launcher.get(name, f"/admin/requests?since={before}") or []
        points[name] = path_points(records, [r for r in log if int(r.get("id", 0)) > before])
    return fit_probes(points, sent_mono_s)


# --- the path under load, across runs ------------------------------------------------------------
def run_points(regions: Mapping[str, Any]) -> list[tuple[int, float]]:
    """The path of every completed request of a live run (`SitesRunResult.regions`), all regions pooled."""
    return [p for run in regions.values() for p in path_points(run.records, run.log)]


def cross_run_paths(points_by_run: Mapping[str, Sequence[tuple[int, float]]]) -> dict[str, RequestOverhead | None]:
    """Per run, the path fitted on the OTHER runs' own requests (same deployment shape, same requests, same
    machine, under the load): a run is never predicted with its own measurements (`bench.paper_overhead`'s
    cross-validation). None for a run with no other run, or when the others have no point."""
    out: dict[str, RequestOverhead | None] = {}
    for name in points_by_run:
        others = [p for other, pts in points_by_run.items() if other != name for p in pts]
        out[name] = fit_overhead(others) if others else None
    return out
