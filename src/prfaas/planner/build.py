"""Build the three planner scenarios from operator inputs (CLI flags or a config), starting from the
paper's case study and replacing what the operator supplies: counts, link, SLO, lengths (log-normal,
a trace, prefix-cache hits), measured profiles and GPU pair. Validation happens here, once; every
problem is a `PrfaasError` with a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prfaas.catalog import load_accelerator
from prfaas.core.errors import ConfigError, InfeasibleError
from prfaas.perf.base import PrefillCostModel
from prfaas.perf.measured import (
    Interpolation,
    ProfileDecodeModel,
    ProfilePrefillModel,
    describe_profile,
    load_profile_json,
)
from prfaas.perf.transfer import ComputeScaledPrefillModel
from prfaas.planner.arch_models import arch_models
from prfaas.planner.paper import PAPER_BS_MAX, PAPER_EGRESS_GBPS, PaperCase, paper_case
from prfaas.planner.report import Assumption
from prfaas.workload.distribution import DiscreteLengthDistribution
from prfaas.workload.empirical import lengths_from_trace
from prfaas.workload.lognormal import truncated_lognormal
from prfaas.workload.prefix import PrefixHits, hits_after_hit_rate, replay_prefix_cache
from prfaas.workload.traces import load_trace

SCENARIOS = ("paper",)


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """Operator inputs; None means "as in the paper's case study"."""

    scenario: str = "paper"
    n_prfaas: int | None = None
    n_pd: int | None = None
    n_homogeneous: int | None = None
    gpus_per_instance: int | None = None
    egress_gbps: float | None = None
    prfaas_gpu: str | None = None
    pd_gpu: str | None = None
    pd_compute_scale: float | None = None
    profile_path: str | None = None
    pd_profile_path: str | None = None
    workload: str = "lognormal"
    mu: float | None = None
    sigma: float | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None
    hit_rate: float = 0.0
    cache_blocks: int | None = None
    decode_holds_prefix: bool = False  # the decode side holds cached prefixes: only the increment ships
    output_tokens: float | None = None
    slo_tokens_per_s: float | None = None
    bs_max: int | None = None
    interpolation: Interpolation = Interpolation.QUADRATIC_FIT
    model: str | None = None  # a catalog architecture instead of the paper's measured 1T profile
    decode_overhead_ms: float | None = None


def _positive(name: str, value: float | int | None) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")


def validate(inputs: PlanInputs) -> None:
    if inputs.scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {inputs.scenario!r}; known: {', '.join(SCENARIOS)}")
    for name in ("n_prfaas", "n_homogeneous", "gpus_per_instance", "egress_gbps", "pd_compute_scale",
                 "decode_overhead_ms", "sigma", "min_tokens", "max_tokens", "output_tokens", "slo_tokens_per_s",
                 "bs_max"):
        _positive(name.replace("_", "-"), getattr(inputs, name, None))
    if inputs.n_pd is not None and inputs.n_pd < 2:
        raise ConfigError(f"n-pd must be >= 2 (one PD-P and one PD-D at least), got {inputs.n_pd}")
    if inputs.cache_blocks is not None and inputs.cache_blocks < 0:
        raise ConfigError(f"cache-blocks must be >= 0, got {inputs.cache_blocks}")
    if not 0.0 <= inputs.hit_rate <= 1.0:
        raise ConfigError(f"hit-rate must be in [0, 1], got {inputs.hit_rate}")


def build_case(inputs: PlanInputs) -> PaperCase:
    """The three scenarios (prfaas_pd, homogeneous, naive) and their assumptions."""
    validate(inputs)
    for gpu in (inputs.prfaas_gpu, inputs.pd_gpu):
        if gpu is not None:
            load_accelerator(gpu)  # unknown names fail here, listing the known ones
    slo = inputs.slo_tokens_per_s or 40.0
    base = paper_case(inputs.interpolation, egress_gbps=inputs.egress_gbps or PAPER_EGRESS_GBPS, slo_tokens_per_s=slo)
    notes: list[Assumption] = list(base.assumptions)
    lengths, input_lengths, hits, output_tokens = _lengths(inputs, notes)
    if inputs.model is not None:
        if inputs.profile_path is not None or inputs.pd_profile_path is not None:
            raise ConfigError("give either --model or measured profiles, not both")
        gpus_per_instance = inputs.gpus_per_instance or 8
        prfaas_model, pd_model, bs_max = arch_models(inputs, gpus_per_instance, slo, input_lengths, output_tokens,
                                                     notes)
    else:
        prfaas_model, pd_model = _prefill_models(inputs, base, notes)
        bs_max = _bs_max(inputs, slo, input_lengths, output_tokens, notes)
    changes = dict(lengths=lengths, output_tokens=output_tokens, bs_max=bs_max, t_decode_s=1.0 / slo,
                   prefix_hits=hits)
    if inputs.gpus_per_instance is not None:
        changes.update(gpus_per_instance_prfaas=inputs.gpus_per_instance, gpus_per_instance_pd=inputs.gpus_per_instance)
    n_prfaas = inputs.n_prfaas or base.prfaas_pd.n_prfaas
    n_pd = inputs.n_pd or base.prfaas_pd.n_pd
    n_homog = inputs.n_homogeneous or (n_prfaas + n_pd)  # same instance count (the paper: 4 + 8 = 12)
    gpus = dict(prfaas_gpu=inputs.prfaas_gpu or "h200", pd_gpu=inputs.pd_gpu or "h20")
    try:
        prfaas_pd = base.prfaas_pd.replace(n_prfaas=n_prfaas, n_pd=n_pd, prfaas_prefill=prfaas_model,
                                           pd_prefill=pd_model, **changes, **gpus)
        homogeneous = base.homogeneous.replace(n_pd=n_homog, pd_prefill=pd_model, **changes, **gpus)
        naive = base.naive.replace(n_prfaas=n_prfaas, n_pd=n_pd, prfaas_prefill=prfaas_model, **changes, **gpus)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    notes.append(Assumption("instances_used", f"PrfaaS {n_prfaas}, PD {n_pd}, homogeneous {n_homog}",
                            "inputs" if inputs.n_prfaas or inputs.n_pd or inputs.n_homogeneous else "paper"))
    return PaperCase(prfaas_pd, homogeneous, naive, tuple(notes))


def _lengths(inputs: PlanInputs, notes: list[Assumption]
             ) -> tuple[DiscreteLengthDistribution, DiscreteLengthDistribution, PrefixHits | None, float]:
    """(uncached lengths, whole-prompt lengths, prefix hits or None, mean output tokens)."""
    hits: PrefixHits | None = None
    output_tokens = inputs.output_tokens or 1024.0
    if inputs.workload == "lognormal":
        lengths = truncated_lognormal(
            inputs.mu if inputs.mu is not None else 9.90, inputs.sigma or 1.00,
            inputs.min_tokens or 128, inputs.max_tokens or 131072,
        )
        if any(v is not None for v in (inputs.mu, inputs.sigma, inputs.min_tokens, inputs.max_tokens)):
            _replace_note(notes, Assumption("length_distribution", lengths.name, "inputs"))
    else:
        path = Path(inputs.workload)
        if not path.exists():
            raise ConfigError("workload must be 'lognormal' or an existing trace file", path=str(path))
        requests = load_trace(path)
        lengths = lengths_from_trace(requests)
        if inputs.cache_blocks is not None:
            replay = replay_prefix_cache(requests, inputs.cache_blocks)
            hits = replay.hits()
            notes.append(Assumption("prefix_cache_token_hit_rate", round(replay.token_hit_rate, 4),
                                    f"LRU replay of the trace's hash_ids, {inputs.cache_blocks} blocks"))
        if inputs.output_tokens is None:
            output_tokens = sum(r.output_tokens for r in requests) / len(requests)
        _replace_note(notes, Assumption("length_distribution", f"trace {path.name} ({len(requests)} requests)",
                                        str(path)))
        _replace_note(notes, Assumption("output_tokens", round(output_tokens, 1), "trace mean"
                                        if inputs.output_tokens is None else "inputs"))
    if inputs.hit_rate > 0:
        if hits is not None:
            raise ConfigError("give either --hit-rate or --cache-blocks, not both")
        hits = hits_after_hit_rate(lengths, inputs.hit_rate)
        notes.append(Assumption("prefix_hit_rate", inputs.hit_rate, "inputs: cached fraction, whole 512-token blocks"))
    if inputs.output_tokens is not None:
        _replace_note(notes, Assumption("output_tokens", inputs.output_tokens, "inputs"))
    if hits is None:
        return lengths, lengths, None, output_tokens
    hits = hits.with_decode_holds_prefix(inputs.decode_holds_prefix)
    notes.append(Assumption(
        "prefix_hit_cost",
        "prefill t_prefill_s(uncached, cached); ships " + (
            "only the increment S_kv(l+c) - S_kv(c) + S_kv(0)" if inputs.decode_holds_prefix
            else "the whole prompt's state S_kv(l+c)"),
        "inputs: --decode-holds-prefix" if inputs.decode_holds_prefix
        else "the decode side holds no prefix (as in prfaas serve and simulate)"))
    return hits.uncached_lengths(), lengths, hits, output_tokens


def _prefill_models(inputs: PlanInputs, base: PaperCase, notes: list[Assumption]
                    ) -> tuple[PrefillCostModel, PrefillCostModel]:
    prfaas_model: PrefillCostModel | None = base.prfaas_pd.prfaas_prefill
    pd_model: PrefillCostModel | None = base.prfaas_pd.pd_prefill
    assert prfaas_model is not None and pd_model is not None
    if inputs.profile_path is not None:
        profile = load_profile_json(inputs.profile_path)
        prfaas_model = ProfilePrefillModel(profile, inputs.interpolation)
        _replace_note(notes, Assumption("prfaas_prefill_profile", describe_profile(profile), inputs.profile_path))
    if inputs.pd_profile_path is not None:
        pd_profile = load_profile_json(inputs.pd_profile_path)
        pd_model = ProfilePrefillModel(pd_profile, inputs.interpolation)
        _replace_note(notes, Assumption("pd_prefill_profile", describe_profile(pd_profile), inputs.pd_profile_path))
    elif inputs.profile_path is not None or inputs.prfaas_gpu or inputs.pd_gpu or inputs.pd_compute_scale:
        pd_model = _scaled_pd_model(inputs, prfaas_model, base, notes)
    return prfaas_model, pd_model


def _scaled_pd_model(inputs: PlanInputs, prfaas_model: PrefillCostModel, base: PaperCase,
                     notes: list[Assumption]) -> PrefillCostModel:
    """Carry the PrfaaS model to the PD GPU: k from input, the paper's calibration (H200 -> H20), or the peak
    ratio (equal MFU assumed) for any other pair."""
    src, dst = (inputs.prfaas_gpu or "h200").lower(), (inputs.pd_gpu or "h20").lower()
    paper_pd = base.prfaas_pd.pd_prefill
    assert isinstance(paper_pd, ComputeScaledPrefillModel)
    if inputs.pd_compute_scale is not None:
        k, why = inputs.pd_compute_scale, "inputs"
    elif (src, dst) == ("h200", "h20"):
        k, why = paper_pd.compute_scale, "paper calibration (see pd_prefill_compute_scale_k)"
    else:
        a, b = load_accelerator(src), load_accelerator(dst)
        if a.bf16_flops is None or b.bf16_flops is None:
            raise ConfigError(f"no BF16 peak for {src} or {dst}; pass --pd-compute-scale")
        k, why = a.bf16_flops / b.bf16_flops, f"peak BF16 ratio {src}/{dst}, equal MFU assumed"
    t0 = getattr(prfaas_model, "fixed_overhead_s", paper_pd.t0_s)
    _replace_note(notes, Assumption("pd_prefill_compute_scale_k", round(k, 4), why))
    return ComputeScaledPrefillModel(prfaas_model, t0, k, name=f"{prfaas_model.name} on {dst}")


def _bs_max(inputs: PlanInputs, slo_tokens_per_s: float, lengths: DiscreteLengthDistribution,
            output_tokens: float, notes: list[Assumption]) -> int:
    if inputs.bs_max is not None:
        _replace_note(notes, Assumption("bs_max", inputs.bs_max, "inputs"))
        return inputs.bs_max
    if inputs.pd_profile_path is None:
        if inputs.slo_tokens_per_s is not None and inputs.slo_tokens_per_s != 40.0:
            raise ConfigError("a decode SLO other than the paper's 40 tok/s needs --bs-max or a --pd-profile "
                              "with decode points")
        return PAPER_BS_MAX
    profile = load_profile_json(inputs.pd_profile_path)
    if not profile.decode:
        raise ConfigError("the PD profile has no decode points; pass --bs-max", path=inputs.pd_profile_path)
    decode = ProfileDecodeModel(profile)
    context = lengths.mean() + output_tokens / 2.0
    slo_s = 1.0 / slo_tokens_per_s
    if decode.t_step_s(1, context) > slo_s:
        raise InfeasibleError(
            f"decode SLO {slo_tokens_per_s:g} tok/s is infeasible: one request alone takes "
            f"{decode.t_step_s(1, context) * 1000:.1f} ms per step at {context:.0f} tokens of context")
    batch = 1
    while batch < 4096 and decode.t_step_s(batch + 1, context) <= slo_s:
        batch += 1
    notes.append(Assumption("bs_max", batch, f"largest batch with step <= {slo_s * 1000:.1f} ms in "
                            f"{inputs.pd_profile_path} at {context:.0f} tokens"))
    return batch


def _replace_note(notes: list[Assumption], note: Assumption) -> None:
    for i, existing in enumerate(notes):
        if existing.name == note.name:
            notes[i] = note
            return
    notes.append(note)


def load_plan_inputs(path: str) -> PlanInputs:
    """Read a `[plan]` table of `PlanInputs` fields from TOML; errors name the file and line."""
    import dataclasses

    from prfaas.catalog.tomlfile import convert, read_toml

    doc = read_toml(path)
    table = doc.data.get("plan")
    if not isinstance(table, dict):
        raise ConfigError("expected a [plan] table", path=path)
    known = {f.name for f in dataclasses.fields(PlanInputs)}
    for key in table:
        if key not in known:
            raise doc.error(f"plan.{key}", f"unknown key; known: {', '.join(sorted(known))}")
    return convert(table, PlanInputs, doc, prefix="plan")


def merge_inputs(base: PlanInputs, overrides: PlanInputs) -> PlanInputs:
    """`overrides`' fields that differ from the defaults replace `base`'s (command-line flags over a file)."""
    import dataclasses

    defaults = PlanInputs()
    changes = {f.name: getattr(overrides, f.name) for f in dataclasses.fields(PlanInputs)
               if getattr(overrides, f.name) != getattr(defaults, f.name)}
    return dataclasses.replace(base, **changes)
