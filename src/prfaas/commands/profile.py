"""`prfaas profile`: measure this engine's T_prefill(l), S_kv(l) and decode step times into a perf profile file
that `prfaas plan --profile` and `prfaas simulate` read.

Every point is the median of `--repeats` timed runs, kept with its spread; the file records what it was
measured on (device, torch threads, CPU, load average before and after, repeats, prfaas version). A profile
that fails the checks of `perf.profile_check` (runs that disagree, prefill not monotone in length, a fit that
misses a point) is refused with a one-line error and kept beside the target as `<out>.rejected.json`;
`--force` writes it anyway, with the problems recorded as warnings.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from prfaas.core.errors import ConfigError
from prfaas.perf.measured import DecodePoint, MeasuredProfile, Measurement, PrefillPoint, save_profile_json
from prfaas.perf.profile_check import CheckLimits, check_profile


def register(app: typer.Typer) -> None:
    app.command("profile", help="Measure this engine's prefill/decode costs into a perf profile.")(profile)


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--batch-sizes must be comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--batch-sizes must be positive integers, got {text!r}")
    return sizes


def profile(
    out: Annotated[Path, typer.Option(help="Profile JSON to write.")],
    model: Annotated[str, typer.Option(help="'default', 'smollm2' or a checkpoint folder.")] = "default",
    max_tokens: Annotated[int, typer.Option(help="Longest prompt to measure.")] = 2048,
    repeats: Annotated[int, typer.Option(help="Timed runs per point (median and spread).")] = 5,
    batch_sizes: Annotated[str, typer.Option(help="Decode batch sizes, comma-separated.")] = "1,8,32",
    decode_steps: Annotated[int, typer.Option(help="Timed decode steps per point.")] = 8,
    threads: Annotated[int | None, typer.Option(help="torch threads (default: torch's).")] = None,
    device: Annotated[str, typer.Option(help="'cpu' or 'cuda'.")] = "cpu",
    dtype: Annotated[str | None, typer.Option(help="float32, bfloat16 or float16.")] = None,
    max_spread: Annotated[float, typer.Option(help="Largest accepted (max - min) / median of a point's runs.")] = 0.5,
    force: Annotated[bool, typer.Option(help="Write the profile even if it fails the quality checks.")] = False,
) -> None:
    if max_tokens < 1 or repeats < 1 or decode_steps < 1:
        raise ConfigError("--max-tokens, --repeats and --decode-steps must be >= 1")
    if max_spread <= 0:
        raise ConfigError(f"--max-spread must be > 0, got {max_spread}")
    sizes = _batch_sizes(batch_sizes)
    from prfaas.engine.models import load_model
    from prfaas.engine.profiling import machine_state, num_accelerators, profile_engine

    loaded = load_model(model, device=device, dtype=dtype, num_threads=threads)
    if max_tokens >= loaded.max_context_tokens:
        raise ConfigError(f"--max-tokens {max_tokens} exceeds the model's context ({loaded.max_context_tokens - 1})")
    before = machine_state()
    measured = profile_engine(loaded, max_tokens, repeats, sizes, decode_steps=decode_steps)
    after = machine_state()
    result = _profile_from(measured, model, str(loaded.dtype), num_accelerators(loaded), before, after, repeats,
                           decode_steps)
    _echo(result)
    _check_and_save(result, out, max_spread, force)


def _profile_from(measured: Any, model: str, dtype: str, n_gpu: int, before: Any, after: Any, repeats: int,
                  decode_steps: int) -> MeasuredProfile:
    from prfaas import __version__

    measurement = Measurement(
        device=measured.device, torch_threads=before.torch_threads, cpu_model=before.cpu_model,
        load_avg_before=before.load_avg, load_avg_after=after.load_avg, num_cpus=before.num_cpus, repeats=repeats,
        decode_steps=decode_steps, prfaas_version=__version__,
        measured_at_utc=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return MeasuredProfile(
        name=f"engine-{Path(model).name}",
        model=model,
        device=measured.device,
        n_gpu=n_gpu,
        prefill=tuple(PrefillPoint(p.num_tokens, p.t_prefill_s, float(p.s_kv_bytes), p.spread)
                      for p in measured.prefill),
        decode=tuple(DecodePoint(d.batch_size, d.context_tokens, d.t_step_s, d.spread) for d in measured.decode),
        source="prfaas profile",
        notes=(f"median of {repeats} runs after a warm-up", f"dtype {dtype}"),
        measurement=measurement,
    )


def _echo(profile: MeasuredProfile) -> None:
    for p in profile.prefill:
        typer.echo(f"prefill {p.num_tokens:>6} tokens  {p.t_prefill_s * 1e3:9.1f} ms  spread {p.spread or 0:5.0%}  "
                   f"S_kv {p.s_kv_bytes:>12,.0f} B")
    for d in profile.decode:
        typer.echo(f"decode  batch {d.batch_size:>3} @ {d.context_tokens:>6} tokens  {d.t_step_s * 1e3:8.2f} ms/step  "
                   f"spread {d.spread or 0:5.0%}")
    assert profile.measurement is not None
    typer.echo(f"measured on {profile.measurement.describe()}")


def _check_and_save(profile: MeasuredProfile, out: Path, max_spread: float, force: bool) -> None:
    """Write `profile` to `out` if it passes the checks (or with --force, problems recorded as warnings);
    else keep it as `<out>.rejected.json` and fail with one line."""
    check = check_profile(profile, CheckLimits(max_spread=max_spread))
    m = profile.measurement
    assert m is not None
    busy = m.load_avg_before[0] > m.num_cpus or m.load_avg_after[0] > m.num_cpus
    warnings = list(check.problems)
    if busy:
        warnings.append(f"load average {m.load_avg_before[0]:.2f} -> {m.load_avg_after[0]:.2f} on {m.num_cpus} "
                        "CPUs: the machine was busy while measuring")
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    if check.problems and not force:
        rejected = out.with_name(out.name + ".rejected.json")
        save_profile_json(dataclasses.replace(profile, measurement=dataclasses.replace(
            m, warnings=tuple(warnings))), rejected)
        more = f" (+{len(check.problems) - 1} more)" if len(check.problems) > 1 else ""
        raise ConfigError(f"profile not written: {check.problems[0]}{more}; measurements kept in {rejected}; "
                          "rerun on a quieter machine or with more --repeats, or pass --force")
    save_profile_json(dataclasses.replace(profile, measurement=dataclasses.replace(m, warnings=tuple(warnings))), out)
    typer.echo(f"wrote {out}")
