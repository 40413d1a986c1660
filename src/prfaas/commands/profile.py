"""`prfaas profile`: measure this engine's T_prefill(l), S_kv(l) and decode step times into a perf profile file
that `prfaas plan --profile` and `prfaas simulate` read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prfaas.core.errors import ConfigError


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
    repeats: Annotated[int, typer.Option(help="Timed runs per point (median).")] = 3,
    batch_sizes: Annotated[str, typer.Option(help="Decode batch sizes, comma-separated.")] = "1,8,32",
    decode_steps: Annotated[int, typer.Option(help="Timed decode steps per point.")] = 8,
    threads: Annotated[int | None, typer.Option(help="torch threads (default: torch's).")] = None,
    device: Annotated[str, typer.Option(help="'cpu' or 'cuda'.")] = "cpu",
    dtype: Annotated[str | None, typer.Option(help="float32, bfloat16 or float16.")] = None,
) -> None:
    if max_tokens < 1 or repeats < 1 or decode_steps < 1:
        raise ConfigError("--max-tokens, --repeats and --decode-steps must be >= 1")
    sizes = _batch_sizes(batch_sizes)
    from prfaas.engine.models import load_model
    from prfaas.engine.profiling import profile_engine
    from prfaas.perf.measured import DecodePoint, MeasuredProfile, PrefillPoint, save_profile_json

    loaded = load_model(model, device=device, dtype=dtype, num_threads=threads)
    if max_tokens >= loaded.max_context_tokens:
        raise ConfigError(f"--max-tokens {max_tokens} exceeds the model's context ({loaded.max_context_tokens - 1})")
    measured = profile_engine(loaded, max_tokens, repeats, sizes, decode_steps=decode_steps)
    result = MeasuredProfile(
        name=f"engine-{Path(model).name}",
        model=model,
        device=measured.device,
        n_gpu=1,
        prefill=tuple(PrefillPoint(p.num_tokens, p.t_prefill_s, float(p.s_kv_bytes)) for p in measured.prefill),
        decode=tuple(DecodePoint(d.batch_size, d.context_tokens, d.t_step_s) for d in measured.decode),
        source="prfaas profile",
        notes=(f"median of {repeats} runs after a warm-up", f"dtype {loaded.dtype}"),
    )
    save_profile_json(result, out)
    for p in measured.prefill:
        typer.echo(f"prefill {p.num_tokens:>6} tokens  {p.t_prefill_s * 1e3:9.1f} ms  S_kv {p.s_kv_bytes:>12,} B")
    for d in measured.decode:
        typer.echo(f"decode  batch {d.batch_size:>3} @ {d.context_tokens:>6} tokens  {d.t_step_s * 1e3:8.2f} ms/step")
    typer.echo(f"wrote {out}")
