"""`prfaas bench`: two emulated datacenters, the live benchmark, policy comparison and fault injection.

    prfaas bench sites up --cap-mbit 80 [--state F]   # namespaces "prfaas" + "local", veth, tbf cap (root)
    prfaas bench sites up --topology T.toml [--scale 1e-3]   # one namespace per cluster, one capped veth per link
    prfaas bench sites down [--state F]
    prfaas bench sites run --topology T.toml [--fault site-lost|link-degraded|burst]   # one gateway per region, live
    prfaas bench sites compare|chaos --topology T.toml   # selectors / faults on the same requests, beside the sim
    prfaas bench run      [--tiny] [--sites/--no-sites] [--cap-mbit X | --profile P] [--workload lognormal|trace]
    prfaas bench compare  [... --policies homogeneous,naive-offload,prfaas,prfaas-bandwidth-aware] [--host-model]
    prfaas bench chaos    [... --faults link-drop,prfaas-restart,decode-kill,corrupt,gateway-restart]
    prfaas bench paper    [--quick] [--runs 3] [--time-scale 1 --state-scale 128]   # emulated case study
    prfaas bench paper-scenario link-drop|mix-shift [--quick] [--policies a,b]   # scenarios (a) (b), live + sim
    prfaas bench compare|chaos --engine vllm ...       # the same on one vLLM server per node (docs/bench-vllm.md)

Each run starts its own deployment (on the sites by default when root), writes records.jsonl, link.jsonl,
summary.json and plots under --out, and tears everything down, even on failure or SIGTERM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prfaas.bench.choices import BenchSetup, SetupChoices
from prfaas.commands.bench_sites import sites_chaos_cmd, sites_compare_cmd
from prfaas.commands.rundirs import new_run_dir
from prfaas.core.errors import ConfigError

DEFAULT_STATE = Path("/tmp/prfaas-bench/sites.json")

Config = Annotated[Path | None, typer.Option(help="Deployment TOML (default: the embedded default model).")]
Tiny = Annotated[bool, typer.Option(help="Use the tiny CI model (4 layers, hidden 128, threshold 256).")]
Sites = Annotated[bool | None, typer.Option("--sites/--no-sites", help="Two emulated sites (default: if root).")]
Cap = Annotated[float | None, typer.Option(help="Cross-site cap in Mbit/s (default: from --profile, else 80).")]
Profile = Annotated[Path | None, typer.Option(help="`prfaas profile` JSON: sets the regime cap, feeds the sim.")]
Workload = Annotated[str, typer.Option(help="lognormal (the paper's, scaled) or trace.")]
Trace = Annotated[Path | None, typer.Option(help="Trace file (default: the vendored Mooncake trace).")]
Requests = Annotated[int, typer.Option(help="Requests per run.")]
Rate = Annotated[float, typer.Option(help="Mean arrival rate (req/s).")]
MaxTokens = Annotated[int, typer.Option(help="Output tokens per request.")]
Seed = Annotated[int, typer.Option(help="Workload seed.")]
Threshold = Annotated[int | None, typer.Option(help="Offload threshold in tokens (default: the config's).")]
SloTtft = Annotated[float | None, typer.Option(help="TTFT SLO for goodput (s).")]
SloTpot = Annotated[float | None, typer.Option(help="TPOT SLO for goodput (s).")]
Concurrency = Annotated[int, typer.Option(help="Most requests in flight.")]
Budget = Annotated[float, typer.Option(help="No request is sent after this many seconds.")]
Delay = Annotated[float, typer.Option(help="One-way delay of the KV stream in ms (sender shim; emulation).")]
Loss = Annotated[float, typer.Option(help="Probability a KV chunk is lost and resent (emulation).")]
Engine = Annotated[str, typer.Option(help="prfaas (our engine) or vllm: one vLLM server per node, started once per "
                                         "command in the node's site (`prfaas vllm install`; docs/bench-vllm.md).")]
Out = Annotated[Path | None, typer.Option(help="Output folder (default: $XDG_STATE_HOME/prfaas/runs/bench-<cmd>-"
                                                "<time>, XDG_STATE_HOME defaulting to ~/.local/state).")]


def register(app: typer.Typer) -> None:
    bench = typer.Typer(no_args_is_help=True, help="Load generation, live benchmarks and link emulation.")
    sites = typer.Typer(no_args_is_help=True, help="Emulated datacenters (network namespaces; root): two, or one per "
                                                            "cluster of a topology.")
    sites.command("up", help="Create the sites (two, or one per cluster with --topology); leave them up.")(
        sites_up_cmd)
    sites.command("down", help="Delete the sites made by `sites up`.")(sites_down_cmd)
    sites.command("run", help="A live run on one namespace per cluster of a topology: one gateway per region, "
                              "per-region load, an optional fault; report per region.")(sites_run_cmd)
    sites.command("compare", help="The same requests live under each site selector, beside the simulator (with "
                                  "and without the measured request path).")(sites_compare_cmd)
    sites.command("chaos", help="A no-fault baseline, then faults (one PrfaaS site lost, one link degraded 10x, "
                                "a region's burst): the same requests live, beside the simulator.")(sites_chaos_cmd)
    bench.add_typer(sites, name="sites")
    bench.command("run", help="One live run: workload, records, summary, plots.")(run_cmd)
    bench.command("compare", help="The same workload under each policy, beside the simulator.")(compare_cmd)
    bench.command("chaos", help="Inject faults into a live run and check nothing is lost.")(chaos_cmd)
    bench.command("paper", help="The paper's case study live on emulated accelerators, beside the simulator.")(
        paper_cmd)
    bench.command("paper-sim", help="Re-run the simulator side of a `bench paper` output with a measured "
                                    "request-path overhead.")(paper_sim_cmd)
    bench.command("paper-scenario", help="The simulator's scenario (a) link-drop or (b) mix-shift live on emulated "
                                         "accelerators, the simulator on the same requests beside it.")(
        paper_scenario_cmd)
    app.add_typer(bench, name="bench", help="Load generation, live benchmarks and link emulation.")


def sites_up_cmd(cap_mbit: Cap = 80.0, reverse_cap_mbit: Annotated[float | None, typer.Option()] = None,
                 state: Annotated[Path, typer.Option(help="Where the handle is saved.")] = DEFAULT_STATE,
                 topology: Annotated[Path | None, typer.Option(
                     help="A [topology] TOML: one namespace per cluster, one capped veth per link.")] = None,
                 scale: Annotated[float, typer.Option(
                     help="With --topology: link cap in Mbit/s = capacity_gbps x 1000 x scale.")] = 1e-3) -> None:
    if state.exists():
        raise ConfigError(f"sites already up per {state}; run `prfaas bench sites down --state {state}` first")
    if topology is not None:
        from prfaas.bench.sites_multi import MultiSitesSpec, describe, multi_sites_up, save_multi_sites
        from prfaas.planner.multi_build import load_topology

        topo, _ = load_topology(str(topology))
        many = multi_sites_up(topo, MultiSitesSpec(scale=scale))
        save_multi_sites(many, state)
        typer.echo(f"{describe(many)}\n  run in a site: ip netns exec <namespace> <command>\nstate: {state}")
        return
    from prfaas.bench.sites import SitesSpec, save_sites, sites_up

    sites = sites_up(SitesSpec(cap_mbit=cap_mbit, reverse_cap_mbit=reverse_cap_mbit))
    save_sites(sites, state)
    info = sites.info
    typer.echo(f"prfaas site {info.prfaas_ns} ({info.prfaas_addr}) <-> local site {info.local_ns} "
               f"({info.local_addr}); cap {cap_mbit} Mbit/s prfaas->local\n"
               f"  run in a site: ip netns exec {info.local_ns} <command>\nstate: {state}")


def sites_down_cmd(state: Annotated[Path, typer.Option(help="The handle `sites up` saved.")] = DEFAULT_STATE) -> None:
    from prfaas.bench.sites import load_sites
    from prfaas.bench.sites_multi import is_multi_state, load_multi_sites

    if is_multi_state(state):
        many = load_multi_sites(state)
        many.down()
        state.unlink(missing_ok=True)
        typer.echo(f"deleted {', '.join(many.info.namespace.values())}")
        return
    sites = load_sites(state)
    sites.down()
    state.unlink(missing_ok=True)
    typer.echo(f"deleted {sites.info.prfaas_ns} and {sites.info.local_ns}")


def sites_run_cmd(topology: Annotated[Path, typer.Option(help="A [topology] TOML (core.topology).")],
                  requests: Annotated[int, typer.Option(help="Requests per region.")] = 20,
                  load: Annotated[float, typer.Option(help="Region j offers traffic_rps_j x load (paper req/s).")]
                  = 0.5,
                  threshold: Annotated[int | None, typer.Option(
                      help="Offload threshold (tokens; default 19,400, engine vllm 256).")] = None,
                  max_tokens: MaxTokens = 8,
                  time_scale: Annotated[float, typer.Option(help="k_t (docs/emulated.md).")] = 0.25,
                  state_scale: Annotated[float, typer.Option(help="k_b.")] = 512.0,
                  scale: Annotated[float | None, typer.Option(
                      help="Link cap Mbit/s = capacity_gbps x 1000 x scale (default 1 / (k_t x k_b)).")] = None,
                  nodes_per_cluster: Annotated[int, typer.Option(help="At most this many nodes per PrfaaS "
                                                                      "cluster and PD role.")] = 2,
                  selector: Annotated[str, typer.Option(help="prfaas-sites or home-only.")] = "prfaas-sites",
                  fault: Annotated[str | None, typer.Option(help="site-lost, link-degraded or burst.")] = None,
                  fault_at_s: Annotated[float, typer.Option(help="Inject this long after the load starts.")] = 3.0,
                  fault_target: Annotated[str | None, typer.Option(
                      help="The PrfaaS cluster (site-lost), link id (link-degraded) or region (burst); default: "
                           "the first.")] = None,
                  burst_factor: Annotated[float, typer.Option(help="burst: the rate x this in the window.")] = 5.0,
                  burst_s: Annotated[float, typer.Option(help="burst: the window's length in s.")] = 5.0,
                  probes: Annotated[int, typer.Option(help="Request-path probes per region before the load, "
                                                            "added to the prediction (0: none).")] = 6,
                  preemption: Annotated[bool, typer.Option(
                      "--preemption/--no-preemption", help="PrfaaS nodes pause a prefill at a safe point for another "
                                                           "region's turn; the prediction too.")] = True,
                  engine: Annotated[str, typer.Option(
                      help="emulated (accelerator timings, the simulator's prediction beside) or vllm (one vLLM "
                           "server per node, tiny Qwen3-Next on this CPU; prompts scaled to its 4,096-token "
                           "context, live numbers only).")] = "emulated",
                  seed: Seed = 0, out: Out = None) -> None:
    from prfaas.bench.sites_compare import run_live, run_with_prediction
    from prfaas.bench.sites_report import format_reports
    from prfaas.bench.sites_run import PAPER_THRESHOLD_TOKENS, VLLM_THRESHOLD_TOKENS, SitesFault, SitesRunSpec
    from prfaas.planner.multi_build import load_topology

    try:
        chosen = SitesFault(fault) if fault is not None else None
    except ValueError:
        raise ConfigError(f"--fault must be one of: {', '.join(f.value for f in SitesFault)}") from None
    if probes < 0:
        raise ConfigError(f"--probes must be >= 0, got {probes}")
    topo, _ = load_topology(str(topology))
    if chosen is SitesFault.BURST:  # before anything starts
        from prfaas.bench.sites_compare import burst_target

        burst_target(topo, fault_target)
    if threshold is None:
        threshold = VLLM_THRESHOLD_TOKENS if engine == "vllm" else PAPER_THRESHOLD_TOKENS
    length_factor = threshold / PAPER_THRESHOLD_TOKENS if engine == "vllm" else 1.0  # the paper's lengths, scaled
    spec = SitesRunSpec(requests_per_region=requests, load=load, threshold_tokens=threshold, max_tokens=max_tokens,
                        length_factor=length_factor, time_scale=time_scale, state_scale=state_scale, scale=scale,
                        max_nodes_per_cluster=nodes_per_cluster, site_selector=selector, seed=seed, fault=chosen,
                        fault_at_s=fault_at_s, fault_target=fault_target, burst_factor=burst_factor,
                        burst_s=burst_s, prefill_preemption=preemption, engine=engine)
    out_dir = _out(out, "sites")
    typer.echo(f"{len(topo.prfaas)} PrfaaS clusters, {len(topo.pd)} PD regions, {len(topo.links)} links; "
               f"links emulated at {spec.link_scale * 1000:g} Mbit/s per paper Gbps; selector {selector}; "
               f"engine {engine}")
    if engine == "vllm":
        typer.echo(f"engine vllm: one vLLM server per node, threshold {threshold} tokens, prompt lengths x "
                   f"{length_factor:.4f}; no prediction (the simulator has no profile of these CPU servers)")
        result, reports = run_live(topo, spec, out_dir, log=typer.echo)
        written = "report.json"
    else:
        outcome = run_with_prediction(topo, spec, out_dir, probes, log=typer.echo)
        result, reports = outcome.result, outcome.reports
        written = "report.json (sim with the probed request path), report-without-path.json, overhead.json"
    typer.echo(format_reports(reports, result))
    typer.echo(f"wrote {out_dir}/{written}, report.txt, records-<region>.jsonl")
    if any(r.lost for r in reports):
        raise typer.Exit(1)


def _out(out: Path | None, cmd: str) -> Path:
    """--out, or a fresh folder in the per-user state directory (never the current directory); printed."""
    out_dir = out or new_run_dir(f"bench-{cmd}")
    typer.echo(f"output: {out_dir}")
    return out_dir


def _setup(choices: SetupChoices) -> BenchSetup:
    from prfaas.bench.choices import resolve_setup

    setup = resolve_setup(choices)
    for note in setup.notes:
        typer.echo(f"note: {note}")
    where = "two emulated sites" if setup.sites_spec else "loopback"
    spec = setup.spec
    typer.echo(f"deployment on {where}, cross-site cap {setup.cap_mbit:.1f} Mbit/s, policy {setup.cfg.policy.name}, "
               f"threshold {setup.cfg.policy.threshold_tokens}; workload {spec.kind.value} x{spec.factor:.4f}, "
               f"{spec.num_requests} requests at {spec.rate_rps:g} req/s")
    return setup


def _engine(engine: str, setup: BenchSetup, delay_ms: float = 0.0, chunk_loss: float = 0.0) -> BenchSetup:
    """The setup for `engine`: for vLLM the workload's context is capped to the servers' max_model_len, and the
    sender-shim emulations (our node's KV sender) are refused."""
    from dataclasses import replace

    if engine == "prfaas":
        return setup
    if engine != "vllm":
        raise ConfigError(f"--engine must be prfaas or vllm, got {engine!r}")
    if delay_ms or chunk_loss:
        raise ConfigError("--delay-ms and --chunk-loss emulate our node's KV sender; not with --engine vllm")
    from prfaas.bench.vllm_nodes import MAX_MODEL_LEN

    typer.echo(f"engine vllm: one vLLM server per node (tiny Qwen3-Next), prompts capped to {MAX_MODEL_LEN} tokens")
    return replace(setup, spec=replace(setup.spec, max_context_tokens=MAX_MODEL_LEN))


def run_cmd(config: Config = None, tiny: Tiny = False, sites: Sites = None, cap_mbit: Cap = None,
            profile: Profile = None, workload: Workload = "lognormal", trace: Trace = None, requests: Requests = 40,
            rate_rps: Rate = 1.0, max_tokens: MaxTokens = 16, seed: Seed = 0, threshold: Threshold = None,
            policy: Annotated[str | None, typer.Option(help="Routing policy (default: the config's).")] = None,
            slo_ttft_s: SloTtft = None, slo_tpot_s: SloTpot = None, concurrency: Concurrency = 32,
            time_budget_s: Budget = 600.0, delay_ms: Delay = 0.0, chunk_loss: Loss = 0.0, out: Out = None) -> None:
    from prfaas.bench.loadgen import ProgressBar
    from prfaas.bench.run import bench_deployment, write_run
    from prfaas.bench.summary import format_summary
    from prfaas.bench.workload import build_requests

    s = _setup(SetupChoices(config=config, tiny=tiny, sites=sites, cap_mbit=cap_mbit, profile=profile,
                            workload=workload, trace=trace, num_requests=requests, rate_rps=rate_rps,
                            max_tokens=max_tokens, seed=seed, threshold_tokens=threshold, policy=policy,
                            slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s, concurrency=concurrency,
                            time_budget_s=time_budget_s, delay_ms=delay_ms, chunk_loss=chunk_loss))
    out_dir = _out(out, "run")
    reqs = build_requests(s.spec)
    with bench_deployment(s.cfg, out_dir / "deploy", s.sites_spec, fault_nodes=s.fault_nodes) as dep:
        result = dep.measure(reqs, s.opts, ProgressBar(len(reqs), label=s.cfg.policy.name))
    summary = write_run(result, out_dir, f"{s.cfg.policy.name} ({s.spec.kind.value})", s.slo)
    typer.echo(format_summary(summary, s.cfg.policy.name))
    typer.echo(f"wrote {out_dir}/records.jsonl, summary.json, run.png")


def compare_cmd(config: Config = None, tiny: Tiny = False, sites: Sites = None, cap_mbit: Cap = None,
                profile: Profile = None, workload: Workload = "lognormal", trace: Trace = None,
                requests: Requests = 40, rate_rps: Rate = 1.0, max_tokens: MaxTokens = 16, seed: Seed = 0,
                threshold: Threshold = None,
                policies: Annotated[str, typer.Option(help="Comma-separated policies.")] =
                "homogeneous,naive-offload,prfaas,prfaas-bandwidth-aware",
                slo_ttft_s: SloTtft = None, slo_tpot_s: SloTpot = None, concurrency: Concurrency = 32,
                time_budget_s: Budget = 600.0, delay_ms: Delay = 0.0, chunk_loss: Loss = 0.0,
                engine: Engine = "prfaas", out: Out = None,
                host_model: Annotated[bool, typer.Option(
                    help="Model the shared host and the request path from a calibration run first "
                         "(docs/real-fidelity.md).")] = False) -> None:
    from prfaas.bench.compare import calibrate, compare_policies, format_compare
    from prfaas.bench.run import bench_deployment

    names = [p.strip() for p in policies.split(",") if p.strip()]
    if not names:
        raise ConfigError("--policies is empty")
    s = _setup(SetupChoices(config=config, tiny=tiny, sites=sites, cap_mbit=cap_mbit, profile=profile,
                            workload=workload, trace=trace, num_requests=requests, rate_rps=rate_rps,
                            max_tokens=max_tokens, seed=seed, threshold_tokens=threshold, slo_ttft_s=slo_ttft_s,
                            slo_tpot_s=slo_tpot_s, concurrency=concurrency, time_budget_s=time_budget_s,
                            delay_ms=delay_ms, chunk_loss=chunk_loss))
    s = _engine(engine, s, delay_ms, chunk_loss)
    out_dir = _out(out, "compare")
    with bench_deployment(s.cfg, out_dir / "deploy", s.sites_spec, fault_nodes=s.fault_nodes, engine=engine,
                          log=typer.echo) as dep:
        calibration = calibrate(dep, s.spec, s.opts, out_dir, slo=s.slo) if host_model else None
        result = compare_policies(dep, s.spec, s.opts, out_dir, policies=names, slo=s.slo,
                                  profile_path=None if calibration else profile, calibration=calibration)
    typer.echo(format_compare(result))
    typer.echo(f"wrote {out_dir}/compare.json, compare.txt, compare.png and one folder per policy")


def chaos_cmd(config: Config = None, tiny: Tiny = False, sites: Sites = None, cap_mbit: Cap = None,
              policy: Annotated[str | None, typer.Option(help="Routing policy (default: the config's).")] = None,
              requests: Requests = 20, rate_rps: Rate = 2.0, max_tokens: MaxTokens = 16, seed: Seed = 0,
              threshold: Threshold = None,
              faults: Annotated[str, typer.Option(help="Comma-separated faults (link-drop needs the sites).")] =
              "link-drop,prfaas-restart,decode-kill,corrupt,gateway-restart,overload",
              fault_at_s: Annotated[float, typer.Option(help="Inject this long after the load starts.")] = 2.0,
              recover_after_s: Annotated[float, typer.Option(help="Undo the fault after this long.")] = 5.0,
              engine: Engine = "prfaas", out: Out = None) -> None:
    from prfaas.bench.chaos import Fault, format_reports, probe_requests, run_fault, write_reports
    from prfaas.bench.run import bench_deployment
    from prfaas.bench.workload import build_requests

    try:
        chosen = [Fault(f.strip()) for f in faults.split(",") if f.strip()]
    except ValueError:
        raise ConfigError(f"--faults must be among: {', '.join(f.value for f in Fault)}") from None
    s = _setup(SetupChoices(config=config, tiny=tiny, sites=sites, cap_mbit=cap_mbit, num_requests=requests,
                            rate_rps=rate_rps, max_tokens=max_tokens, seed=seed, threshold_tokens=threshold,
                            policy=policy))
    s = _engine(engine, s)
    if engine == "vllm" and Fault.CORRUPT in chosen:
        chosen.remove(Fault.CORRUPT)
        typer.echo("note: corrupt skipped with --engine vllm (it swaps in our node's sender shim)")
    if s.sites_spec is None and Fault.LINK_DROP in chosen:
        chosen.remove(Fault.LINK_DROP)
        typer.echo("note: link-drop skipped (needs the emulated sites)")
    out_dir = _out(out, "chaos")
    during, probes = build_requests(s.spec), probe_requests(s.spec)
    reports = []
    with bench_deployment(s.cfg, out_dir / "deploy", s.sites_spec, engine=engine, log=typer.echo) as dep:
        for fault in chosen:
            typer.echo(f"fault {fault.value} ...")
            reports.append(run_fault(dep, fault, during, probes, s.opts, out_dir, fault_at_s=fault_at_s,
                                     recover_after_s=recover_after_s))
    write_reports(reports, out_dir)
    typer.echo(format_reports(reports))
    lost = sum(r.lost for r in reports)
    typer.echo(f"requests sent {sum(r.sent for r in reports)}, completed {sum(r.completed for r in reports)}, "
               f"failed with an error {sum(r.failed for r in reports)}, lost {lost}")
    if lost or not all(r.ok for r in reports):
        raise typer.Exit(1)


QUICK_CONFIGURATIONS = ("prfaas-pd", "homogeneous")
ALL_CONFIGURATIONS = ("prfaas-pd", "prfaas-pd/prfaas-bandwidth-aware", "homogeneous", "naive")
QUICK_OVERLOAD_RPS = 3.0  # paper units: above the homogeneous planner's 2.11, below PrfaaS-PD's 3.33


def paper_cmd(quick: Annotated[bool, typer.Option(help="CI mode (a few minutes): PrfaaS-PD and homogeneous, no "
                                                       "rate search; the common load and one overload rate.")] = False,
              runs: Annotated[int, typer.Option(help="Runs (seeds) per configuration; medians are reported.")] = 1,
              requests: Annotated[int | None, typer.Option(help="Requests per probe (default 300; quick 30).")] = None,
              configurations: Annotated[str | None, typer.Option(
                  help="Comma-separated: prfaas-pd, prfaas-pd/prfaas-bandwidth-aware, homogeneous, naive.")] = None,
              time_scale: Annotated[float | None, typer.Option(
                  help="k_t: every duration x k_t (docs/emulated.md); default 2, quick 1.")] = None,
              state_scale: Annotated[float, typer.Option(help="k_b: every state byte / k_b.")] = 128.0,
              steps_per_event: Annotated[int, typer.Option(help="Decode steps per token event.")] = 16,
              common_load_rps: Annotated[float, typer.Option(help="The common load (paper req/s).")] = 1.0,
              search: Annotated[bool, typer.Option(help="Search each max sustainable rate with the simulator's "
                                                         "criterion (long: several full runs each).")] = False,
              capacity: Annotated[bool, typer.Option(help="One saturated run per configuration: served "
                                                           "throughput.")] = True,
              overload: Annotated[float, typer.Option(help="Capacity run: offered x the planner's Lambda.")] = 1.5,
              capacity_window_s: Annotated[float, typer.Option(help="Capacity run: arrival window (paper s).")] = 60.0,
              capacity_requests: Annotated[int | None, typer.Option(
                  help="Capacity run: this many requests per configuration (instead of the window).")] = None,
              common_requests: Annotated[int | None, typer.Option(help="Requests at the common load.")] = None,
              sites: Sites = None,
              tls: Annotated[bool, typer.Option(help="Mutual TLS on the KV links.")] = True,
              overhead_from: Annotated[Path | None, typer.Option(
                  help="A finished `bench paper` output: fit the request-path overhead to it (sim+overhead).")] = None,
              seed: Seed = 0, out: Out = None) -> None:
    from prfaas.bench.paper import PaperOptions, run_paper
    from prfaas.bench.paper_config import PaperScale
    from prfaas.bench.paper_overhead import overhead_from as fit_from
    from prfaas.bench.paper_report import format_paper

    names: tuple[str, ...] = QUICK_CONFIGURATIONS if quick else ALL_CONFIGURATIONS
    if configurations is not None:
        names = tuple(n.strip() for n in configurations.split(",") if n.strip())
    if runs < 1 or (requests is not None and requests < 2) or (capacity_requests is not None
                                                                 and capacity_requests < 2):
        raise ConfigError("--runs must be >= 1, --requests and --capacity-requests >= 2")
    opts = PaperOptions(out_dir=_out(out, "paper"), scale=PaperScale(
                            time_scale if time_scale is not None else (1.0 if quick else 2.0), state_scale,
                            steps_per_event),
                        num_requests=requests or (30 if quick else 300), runs=runs, seed=seed,
                        common_load_rps=common_load_rps, search=search and not quick,
                        capacity=capacity and not quick, overload=overload, capacity_window_s=capacity_window_s,
                        capacity_requests=capacity_requests, common_requests=common_requests,
                        overhead=fit_from(overhead_from) if overhead_from is not None else None,
                        extra_rates=(QUICK_OVERLOAD_RPS,) if quick else (), configurations=tuple(names),
                        sites=sites, tls=tls)
    result = run_paper(opts, log=typer.echo)
    typer.echo(format_paper(result))
    typer.echo(f"wrote {opts.out_dir}/paper.json, paper.txt, paper.png and one folder per configuration and run")


def paper_sim_cmd(paper_dir: Annotated[Path, typer.Argument(help="The `bench paper` output to re-simulate.")],
                  overhead_from: Annotated[Path | None, typer.Option(
                      help="The calibration `bench paper` output the overhead is fitted to; without it each probe "
                           "is predicted with the overhead of the other runs (cross-validation).")] = None,
                  common_requests: Annotated[int | None, typer.Option(help="As the run used.")] = None,
                  capacity_window_s: Annotated[float | None, typer.Option(help="As the run used.")] = None) -> None:
    from prfaas.bench.paper import resimulate
    from prfaas.bench.paper_overhead import overhead_from as fit_from
    from prfaas.bench.paper_report import format_paper

    overhead = fit_from(overhead_from) if overhead_from is not None else None
    if overhead is not None:
        typer.echo(f"request-path overhead: {overhead.describe()} (from {overhead_from})")
    else:
        typer.echo("request-path overhead: per probe, fitted on its configuration's other runs (cross-validation)")
    result = resimulate(paper_dir, overhead, common_requests=common_requests, capacity_window_s=capacity_window_s)
    typer.echo(format_paper(result))


def paper_scenario_cmd(
        scenario: Annotated[str, typer.Argument(help="link-drop (scenario a) or mix-shift (scenario b).")],
        quick: Annotated[bool, typer.Option(help="The short test version (k_t 1 unless --time-scale).")] = False,
        policies: Annotated[str | None, typer.Option(
            help="Comma-separated routers (default: link-drop prfaas,prfaas-bandwidth-aware; quick: the "
                 "bandwidth-aware one; mix-shift prfaas).")] = None,
        time_scale: Annotated[float | None, typer.Option(help="k_t (docs/emulated.md); default 2, quick 1.")] = None,
        state_scale: Annotated[float, typer.Option(help="k_b: every state byte / k_b.")] = 128.0,
        sim_only: Annotated[bool, typer.Option(help="Only the simulator side (seconds; for tuning).")] = False,
        sites: Sites = None, tls: Annotated[bool, typer.Option(help="Mutual TLS on the KV links.")] = True,
        out: Out = None) -> None:
    from prfaas.bench.paper_config import PaperScale
    from prfaas.bench.paper_scenarios import SCENARIOS, ScenarioOptions, run_scenario
    from prfaas.bench.paper_scenarios_report import format_scenario

    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    names = tuple(n.strip() for n in policies.split(",") if n.strip()) if policies else None
    k_t = time_scale if time_scale is not None else (1.0 if quick else 2.0)
    opts = ScenarioOptions(out_dir=_out(out, f"paper-{scenario}"), scenario=scenario, quick=quick,
                           scale=PaperScale(k_t, state_scale), policies=names, sites=sites, tls=tls,
                           live=not sim_only)
    result = run_scenario(opts, log=typer.echo)
    typer.echo(format_scenario(result))
    typer.echo(f"wrote {opts.out_dir}/{scenario}.json, {scenario}.txt and one PNG per policy")
