"""The overload storm (issue 11) against `prfaas up`'s default deployment (tiny real model), bounded, loopback.

    python benchmarks/bench_overload.py [--clients 200] [--sites] [--out runs/bench-overload]

200 clients at once (token-id prompts of 50-3,000 tokens, max_tokens 8, each giving up after 120 s), then normal
traffic. The table: completed, refused (429/503, admission control), hung (must be 0), lost (must be 0), P99
latency of the admitted requests, time until a normal request is served normally again after the storm (goal
< 10 s), and RSS per process warm-idle / peak / after (goal: after within 10% of warm idle). `--sites` runs it
through the two-site emulation (root). See `prfaas.bench.overload`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import msgspec

from prfaas.bench.overload import StormSpec, format_report, run_storm
from prfaas.bench.run import bench_deployment
from prfaas.bench.sites import SitesSpec
from prfaas.serve.config import GatewaySection, default_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--client-timeout-s", type=float, default=120.0)
    parser.add_argument("--max-prompt", type=int, default=3000)
    parser.add_argument("--sites", action="store_true", help="through the two-site emulation (root)")
    parser.add_argument("--cap-mbit", type=float, default=None)
    parser.add_argument("--prefix-cache-mib", type=int, default=None,
                        help="override model.prefix_cache_bytes (0 disables the prefix cache; RSS comparison)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-overload"))
    args = parser.parse_args()
    cfg = default_config(gateway=GatewaySection(port=0))
    if args.prefix_cache_mib is not None:
        cfg = default_config(gateway=GatewaySection(port=0), model=msgspec.structs.replace(
            cfg.model, prefix_cache_bytes=args.prefix_cache_mib * 1024 * 1024))
    sites = SitesSpec(cap_mbit=args.cap_mbit) if args.sites else None
    spec = StormSpec(clients=args.clients, client_timeout_s=args.client_timeout_s, max_prompt=args.max_prompt)
    title = f"overload storm, {'two emulated sites' if sites else 'loopback'}, {spec.clients} clients"
    with bench_deployment(cfg, args.out / "deploy", sites) as dep:
        report = run_storm(dep, spec)
    text = format_report(report, title)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(text + "\n", encoding="utf-8")
    (args.out / "report.json").write_text(json.dumps(msgspec.to_builtins(report), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
