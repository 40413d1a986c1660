"""The console's what-if panel: the planner's optimum and the simulator's prediction for the running deployment,
from the live window's measured traffic, next to the live numbers.

    setup, live = live_window(records, cluster, window_s=120)   # the newest window of finished requests
    result = what_if(records, cluster, window_s=120)            # blocking (sim + planner): run it in a thread

`records` are the gateway's request records stamped with `finished_at_s` (the console hub keeps them);
`cluster` describes the deployment now: policy, base threshold (and the one in force), roles, link capacity.
The simulator runs the same policy from the same base threshold (a bandwidth-aware loop raises it there too).
The profile (prefill time per uncached length, S_kv from the bytes the transport moved, decode step) comes from
the records themselves (`serve.predict.profile_from_records`); the prompt lengths are fitted with a log-normal
(mu, sigma of log length) clipped to the window's min and max, arrivals as Poisson at the window's rate.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prfaas.serve.predict import LiveSetup, plan_same, profile_from_records, simulate_same, write_profile

MIN_REQUESTS = 5  # fewer finished requests in the window: no prediction (the fits would be noise)
SIM_MAX_DURATION_S = 120.0


def _p90(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


def window_records(records: Sequence[dict[str, Any]], window_s: float, now_unix_s: float) -> list[dict[str, Any]]:
    return [r for r in records if isinstance(r.get("finished_at_s"), float)
            and now_unix_s - r["finished_at_s"] <= window_s]


def live_numbers(records: Sequence[dict[str, Any]], span_s: float) -> dict[str, Any]:
    ttfts = [r["ttft_s"] for r in records if isinstance(r.get("ttft_s"), float)]
    offloaded = [r for r in records if r.get("route") == "prfaas"]
    return {"source": "live", "requests": len(records),
            "ttft_mean_s": statistics.fmean(ttfts) if ttfts else None, "ttft_p90_s": _p90(ttfts),
            "offload_fraction": len(offloaded) / len(records) if records else None,
            "egress_bytes": float(sum(r.get("transfer_bytes") or 0 for r in offloaded)),
            "throughput_rps": len(records) / span_s if span_s > 0 else None}


def live_setup(records: Sequence[dict[str, Any]], cluster: dict[str, Any], span_s: float) -> LiveSetup:
    lengths = [max(1, int(r["prompt_tokens"])) for r in records]
    logs = [math.log(n) for n in lengths]
    roles = [i["role"] for i in cluster["instances"] if i["is_up"]]
    outputs = [int(r.get("completion_tokens") or 1) for r in records]
    return LiveSetup(
        policy=cluster["policy"], threshold_tokens=int(cluster["threshold_tokens"] or 0),
        n_prfaas=roles.count("prfaas_prefill"), n_pd_prefill=roles.count("pd_prefill"),
        n_pd_decode=roles.count("pd_decode"), link_gbps=float(cluster.get("link_capacity_gbps") or 10.0),
        mu=statistics.fmean(logs), sigma=max(statistics.pstdev(logs), 1e-3), min_tokens=min(lengths),
        max_tokens=max(max(lengths), min(lengths) + 1), output_tokens=max(1, int(statistics.median(outputs))),
        rate_rps=len(records) / span_s, duration_s=min(max(span_s, 1.0), SIM_MAX_DURATION_S),
        max_batch=int(cluster.get("max_batch") or 32))


def what_if(records: Sequence[dict[str, Any]], cluster: dict[str, Any], window_s: float,
            now_unix_s: float) -> dict[str, Any]:
    """{"live": ..., "planner": ..., "simulator": ..., "errors": [...], "setup": ...}; blocking."""
    window = window_records(records, window_s, now_unix_s)
    result: dict[str, Any] = {"t": now_unix_s, "window_s": window_s, "errors": [], "live": None,
                              "planner": None, "simulator": None, "setup": None}
    if len(window) < MIN_REQUESTS:
        result["errors"].append(f"{len(window)} requests finished in the last {window_s:.0f} s; the what-if needs "
                                f"at least {MIN_REQUESTS}")
        return result
    span_s = max(1.0, now_unix_s - min(r["finished_at_s"] - (r.get("latency_s") or 0.0) for r in window))
    span_s = min(span_s, window_s)
    result["live"] = live_numbers(window, span_s)
    result["live"]["threshold_tokens"] = cluster.get("effective_threshold_tokens", cluster["threshold_tokens"])
    setup = live_setup(window, cluster, span_s)
    result["setup"] = {"policy": setup.policy, "threshold_tokens": setup.threshold_tokens,
                       "n_prfaas": setup.n_prfaas, "n_pd_prefill": setup.n_pd_prefill,
                       "n_pd_decode": setup.n_pd_decode, "link_gbps": setup.link_gbps,
                       "rate_rps": setup.rate_rps, "mu": setup.mu, "sigma": setup.sigma,
                       "output_tokens": setup.output_tokens}
    try:
        profile = profile_from_records(window, "live")
    except ValueError as exc:
        result["errors"].append(f"no profile from the window: {exc}")
        return result
    with tempfile.TemporaryDirectory(prefix="prfaas-console-") as tmp:
        path = write_profile(profile, Path(tmp) / "live-profile.json")
        for name, run in (("simulator", lambda: simulate_same(path, profile, setup)),
                          ("planner", lambda: plan_same(path, setup))):
            try:
                p = run()
            except Exception as exc:  # a prediction is an extra; the live numbers stand without it
                result["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            result[name] = {"source": p.source, "ttft_mean_s": p.ttft_mean_s, "ttft_p90_s": p.ttft_p90_s,
                            "offload_fraction": p.offload_fraction, "egress_bytes": p.egress_bytes,
                            "throughput_rps": p.throughput_rps, "threshold_tokens": p.threshold_tokens}
    return result
