"""What `prfaas simulate --config FILE` prints and writes for a multi-site (`[topology]`) scenario.

Per region: requests, finished / failed, retried, TTFT mean / P90, offload fraction and where its offloads
went (PrfaaS site -> count); per link: bytes and mean Gbps over the run, its capacity changes. With `--out`:
records.jsonl (`MultiSiteRecord`s: region, prfaas_site, site_reason), summary.json, config.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prfaas.sim.config import SimConfig, config_to_json
from prfaas.sim.multisite_build import build_multisite_inputs
from prfaas.sim.multisite_run import MultiSiteResult, simulate_multisite
from prfaas.sim.output import to_jsonable, write_json, write_records


def run_config(cfg: SimConfig, policy: str | None = None) -> MultiSiteResult:
    inp = build_multisite_inputs(cfg)
    return simulate_multisite(inp.deployment, policy or cfg.policy.name, inp.requests, inp.region_of,
                              selector=inp.selector, selector_config=inp.selector_config,
                              policy_config=inp.policy_config, script=inp.script, options=inp.options,
                              warmup_s=cfg.warmup_s, prefill_queue=cfg.sites.prefill_queue,
                              preempt_prefill=cfg.sites.prefill_preemption, rebalance=inp.rebalance,
                              gateway_heartbeat_s=cfg.sites.gateway_heartbeat_s)


def summary_json(result: MultiSiteResult) -> dict[str, Any]:
    regions = {}
    for name, s in result.regions.items():
        entry = to_jsonable(s)
        entry["offloads_by_site"] = dict(result.offloads_by_site.get(name, {}))
        regions[name] = entry
    links = {lid: {"bytes_sent": lk.bytes_sent, "transfers": lk.transfers, "gbps_mean": round(lk.gbps_mean, 4),
                   "capacity_history": [list(x) for x in lk.capacity_history]}
             for lid, lk in result.links.items()}
    return {"policy": result.policy, "selector": result.selector, "events": result.num_events,
            "wall_s": round(result.wall_s, 3), "regions": regions, "links": links}


def table(result: MultiSiteResult) -> str:
    lines = [f"policy {result.policy}, site selector {result.selector}"]
    lines.append(f"{'region':<10} {'requests':>8} {'ok':>6} {'error':>5} {'retried':>7} {'TTFT mean':>9} "
                 f"{'TTFT P90':>8} {'offload':>7}  offloads by site")
    for name, s in result.regions.items():
        sites = ", ".join(f"{k}={v}" for k, v in sorted(result.offloads_by_site.get(name, {}).items())) or "-"
        lines.append(f"{name:<10} {s.num_requests:>8} {s.num_finished:>6} {s.num_failed:>5} {s.num_retried:>7} "
                     f"{_fmt(s.ttft_mean_s):>9} {_fmt(s.ttft_p90_s):>8} {s.offload_fraction:>7.3f}  {sites}")
    lines.append(f"{'link':<16} {'GB sent':>9} {'transfers':>9} {'mean Gbps':>9}  capacity (t_s: Gbps)")
    for lid, lk in result.links.items():
        caps = ", ".join(f"{t:g}: {c:g}" for t, c in lk.capacity_history)
        lines.append(f"{lid:<16} {lk.bytes_sent / 1e9:>9.2f} {lk.transfers:>9} {lk.gbps_mean:>9.2f}  {caps}")
    return "\n".join(lines)


def write_outputs(cfg: SimConfig, result: MultiSiteResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config_to_json(cfg))
    write_json(out / "summary.json", summary_json(result))
    write_records(out / "records.jsonl", result.records)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"
