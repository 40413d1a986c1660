"""`prfaas simulate`: the discrete-event simulator.

    prfaas simulate --scenario paper [--json] [--load-rps 1.0] [--duration-s 3600] [--check-split]
    prfaas simulate --config FILE [--policy NAME ...] [--out DIR] [--json] [--progress] [--native]

The paper mode prints, per configuration of Table 6: policy, throughput_rps (max sustainable rate, by
bisection), ttft_mean_s and ttft_p90_s at the common load, egress_gbps_mean and offload_fraction.
The config mode runs the TOML scenario (once per `--policy`, default the file's) and, with `--out`,
writes records.jsonl, summary.json, config.json and plots (PNG) there. A scenario with a `[topology]`
section runs the multi-site simulator (`sim.multisite_report`: per-region and per-link summaries).
`--native` runs either mode on the compiled build (`prfaas.native`): the process starts again on it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from prfaas.core.errors import ConfigError, UnknownNameError

SCENARIOS = ("paper",)
PAPER_TABLE6 = {  # Table 6 of the paper: TTFT mean / P90 (s), Lambda_max (req/s)
    "prfaas_pd": (2.22, 3.51, 3.24),
    "homogeneous": (4.44, 9.73, 2.11),
    "naive": (1.74, 3.51, 2.45),
}


def register(app: typer.Typer) -> None:
    app.command("simulate", help="Discrete-event simulation of the scheduling policies.")(simulate_cmd)


def simulate_cmd(
    scenario: Annotated[str | None, typer.Option(help="Built-in scenario: 'paper' (Table 6 case study).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML scenario file (see prfaas.sim.config).")] = None,
    policy: Annotated[list[str] | None, typer.Option(help="Policy to run (repeatable; overrides the file).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write records, summary, config and plots here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = False,
    load_rps: Annotated[float, typer.Option(help="Paper: common load for the TTFT comparison.")] = 1.0,
    duration_s: Annotated[float, typer.Option(help="Paper: arrival window of each probe run (s).")] = 3600.0,
    seed: Annotated[int, typer.Option(help="Paper: workload seed.")] = 0,
    check_split: Annotated[bool, typer.Option(help="Paper: also search N_p - 1 .. N_p + 1 for PrfaaS-PD.")] = False,
    plots: Annotated[bool, typer.Option(help="With --out: write PNG plots.")] = True,
    native: Annotated[bool, typer.Option(help="Run on the compiled build (`prfaas native build`, made first if "
                                               "needed; the same records, ~1.3x less CPU).")] = False,
) -> None:
    if native:
        _run_native()
    if (scenario is None) == (config is None):
        raise ConfigError("give exactly one of --scenario paper or --config FILE")
    if scenario is not None:
        if scenario not in SCENARIOS:
            raise UnknownNameError("scenario", scenario, SCENARIOS)
        _paper(load_rps=load_rps, duration_s=duration_s, seed=seed, check_split=check_split, as_json=as_json,
               progress=progress, out=out)
    else:
        assert config is not None
        _config(config, policies=policy or [], out=out, as_json=as_json, progress=progress, plots=plots)


def _run_native() -> None:
    from prfaas.native import built_native_dir, default_opt_level, is_native, native_modules, run_native

    if is_native():
        typer.echo(f"prfaas simulate: on the compiled build ({Path(__file__).parents[2]})", err=True)
        return
    if built_native_dir(opt_level=default_opt_level()) is None:
        typer.echo(f"prfaas simulate: compiling the native build ({len(native_modules())} modules, a few minutes; "
                   "once per source version) ...", err=True)
    run_native(["-m", "prfaas.cli", *sys.argv[1:]])


# --- paper -----------------------------------------------------------------------------------------


def _paper(*, load_rps: float, duration_s: float, seed: int, check_split: bool, as_json: bool, progress: bool,
           out: Path | None) -> None:
    from prfaas.sim.output import to_jsonable, write_json
    from prfaas.sim.paper import paper_rows, split_check
    from prfaas.sim.search import SustainCriteria

    if load_rps <= 0 or duration_s <= 0:
        raise ConfigError("--load-rps and --duration-s must be > 0")
    criteria = SustainCriteria(duration_s=duration_s)
    bar = _bar(progress, total=27, unit="run")
    hook = None if bar is None else (lambda name, p: bar.update(1))
    rows = paper_rows(load_rps=load_rps, criteria=criteria, seed=seed, on_probe=hook)
    splits = split_check(criteria=criteria, seed=seed) if check_split else []
    if bar is not None:
        bar.close()
    result: dict[str, Any] = {
        "load_rps": load_rps, "duration_s": duration_s, "seed": seed,
        "configurations": [_paper_row_json(r) for r in rows],
    }
    if splits:
        result["split_check"] = to_jsonable(splits)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "paper.json", result)
        write_json(out / "config.json", {"scenario": "paper", "load_rps": load_rps, "duration_s": duration_s,
                                         "seed": seed, "criteria": criteria})
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(_paper_table(result))


def _paper_row_json(r: Any) -> dict[str, Any]:
    paper = PAPER_TABLE6.get(r.configuration)
    return {
        "configuration": r.configuration, "policy": r.policy, "threshold_tokens": r.threshold_tokens,
        "n_prfaas": r.n_prfaas, "n_p": r.n_p, "n_d": r.n_d,
        "throughput_rps": round(r.throughput_rps, 4), "planner_lambda_max": round(r.planner_lambda_max, 4),
        "throughput_vs_planner": round(r.throughput_vs_planner, 4), "load_rps": r.load_rps,
        "ttft_mean_s": _round(r.ttft_mean_s), "ttft_p90_s": _round(r.ttft_p90_s),
        "egress_gbps_mean": round(r.egress_gbps_mean, 3), "offload_fraction": round(r.offload_fraction, 4),
        "egress_gbps_at_throughput": round(r.egress_gbps_at_max, 3),
        "paper_ttft_mean_s": paper[0] if paper else None, "paper_ttft_p90_s": paper[1] if paper else None,
        "paper_lambda_max": paper[2] if paper else None,
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _paper_table(result: dict[str, Any]) -> str:
    head = (f"{'configuration':<12} {'policy':<14} {'thr req/s':>9} {'planner':>8} {'ratio':>6} {'TTFT mean':>9} "
            f"{'TTFT P90':>8} {'paper mean/P90':>14} {'egress Gbps':>11} {'offload':>7}")
    lines = [f"common load {result['load_rps']} req/s, {result['duration_s']:g} s per run, seed {result['seed']}",
             head]
    for r in result["configurations"]:
        lines.append(
            f"{r['configuration']:<12} {r['policy']:<14} {r['throughput_rps']:>9.3f} {r['planner_lambda_max']:>8.3f} "
            f"{r['throughput_vs_planner']:>6.3f} {r['ttft_mean_s']:>9.2f} {r['ttft_p90_s']:>8.2f} "
            f"{r['paper_ttft_mean_s']:>6.2f}/{r['paper_ttft_p90_s']:<7.2f} {r['egress_gbps_mean']:>11.2f} "
            f"{r['offload_fraction']:>7.3f}")
    for s in result.get("split_check", []):
        lines.append(f"split N_p={s['n_p']} N_d={s['n_d']} t={s['threshold_tokens']}: planner "
                     f"{s['planner_lambda_max']:.3f}, simulated {s['throughput_rps']:.3f} req/s")
    return "\n".join(lines)


# --- config ----------------------------------------------------------------------------------------


def _config(path: Path, *, policies: list[str], out: Path | None, as_json: bool, progress: bool,
            plots: bool) -> None:
    from prfaas.sim.build import build_inputs
    from prfaas.sim.config import config_to_json, load_config
    from prfaas.sim.output import to_jsonable, write_json, write_records
    from prfaas.sim.run import RunResult, simulate

    cfg = load_config(path)
    if cfg.topology is not None:
        _multisite(cfg, policies=policies, out=out, as_json=as_json)
        return
    inputs = build_inputs(cfg)
    names = policies or [cfg.policy.name]
    runs: list[RunResult] = []
    end_s = cfg.horizon_s or cfg.duration_s
    for name in names:
        bar = _bar(progress, total=int(end_s), unit="s", desc=name)
        hook: Callable[[float], None] | None = None
        if bar is not None:
            hook = lambda now, b=bar, e=end_s: b.update(max(int(min(now, e)) - b.n, 0))  # noqa: E731
        runs.append(simulate(inputs.deployment, name, inputs.requests, policy_config=inputs.policy_config,
                             script=inputs.script, options=inputs.options, rebalance=cfg.policy.rebalance,
                             reoptimise=inputs.reoptimise, warmup_s=cfg.warmup_s, progress=hook))
        if bar is not None:
            bar.close()
    summaries = {run.policy: to_jsonable(run.summary) for run in runs}
    for run in runs:
        summaries[run.policy].update({"events": run.num_events, "wall_s": round(run.wall_s, 3),
                                      "role_switches": len(run.role_switches)})
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {**config_to_json(cfg), "policies_run": names})
        write_json(out / "summary.json", summaries)
        for run in runs:
            suffix = "" if len(runs) == 1 else f"-{run.policy}"
            write_records(out / f"records{suffix}.jsonl", run.records)
        if plots:
            _plots(runs, out)
    if as_json:
        typer.echo(json.dumps(summaries, indent=2, sort_keys=True))
        return
    for name, s in summaries.items():
        typer.echo(f"{name}: {s['num_finished']}/{s['num_requests']} finished, throughput "
                   f"{s['throughput_rps']:.3f} req/s, goodput {s['goodput_rps']:.3f}, TTFT mean/P90 "
                   f"{_fmt(s['ttft_mean_s'])}/{_fmt(s['ttft_p90_s'])} s, offload {s['offload_fraction']:.3f}, "
                   f"egress mean/P99 {s['egress_gbps_mean']:.2f}/{s['egress_gbps_p99']:.2f} Gbps")


def _multisite(cfg: Any, *, policies: list[str], out: Path | None, as_json: bool) -> None:
    """A `[topology]` scenario: the multi-site simulator; per-region and per-link summaries."""
    from prfaas.sim import multisite_report as report

    if len(policies) > 1:
        raise ConfigError("a [topology] scenario runs one --policy at a time")
    result = report.run_config(cfg, policies[0] if policies else None)
    if out is not None:
        report.write_outputs(cfg, result, out)
    if as_json:
        typer.echo(json.dumps(report.summary_json(result), indent=2, sort_keys=True))
        return
    typer.echo(report.table(result))


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _plots(runs: list[Any], out: Path) -> None:
    from prfaas.sim import plots

    plots.ttft_cdf(runs, out / "ttft_cdf.png")
    for run in runs:
        suffix = "" if len(runs) == 1 else f"-{run.policy}"
        plots.egress_over_time(run, out / f"egress{suffix}.png")
        plots.role_counts(run, out / f"roles{suffix}.png")


def _bar(enabled: bool, **kwargs: Any) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(leave=False, **kwargs)
