"""Measured profiles: a table of prompt length -> (S_kv, T_prefill), plus optional decode steps.

This is the paper's own method (Table 5 fed into the throughput model) and the format that
`prfaas profile` writes for our engine. Between and beyond measured points:

- `S_kv(l)` is piecewise linear (state is exactly affine in l for every layer kind, except SWA's
  cap, which is piecewise linear too); beyond the last point it extends the last segment.
- `T_prefill(l)` is, by default, the least-squares fit of `a + b*l + c*l^2` (GEMMs are linear in l,
  causal attention quadratic) with a, b, c >= 0 (`Interpolation.QUADRATIC_FIT`). With fewer than
  three points, or on request, it is piecewise linear (`Interpolation.PIECEWISE_LINEAR`).
- With a cached prefix of c tokens, computing l new tokens costs T(c + l) - T(c), floored at the
  fixed overhead a: the incremental work of a longer prompt.

Profile files are JSON (`save_profile_json` / `load_profile_json`), versioned and type-tagged. Version 2
adds what `prfaas profile` measured under (`Measurement`: device, threads, CPU, load, repeats, spread per
point, prfaas version; `n_gpu` 0 on a CPU); version-1 files (no such record) still load, and
`MeasuredProfile.describe()` says which kind a comparison used. The quality checks live in
`perf.profile_check`.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prfaas.core.errors import ConfigError
from prfaas.perf.lsq import least_squares, squared_error

PROFILE_FORMAT = "prfaas-profile"
PROFILE_VERSION = 2
READABLE_VERSIONS = (1, 2)


class Interpolation(enum.Enum):
    QUADRATIC_FIT = "quadratic_fit"
    PIECEWISE_LINEAR = "piecewise_linear"


@dataclass(frozen=True, slots=True)
class PrefillPoint:
    num_tokens: int
    t_prefill_s: float  # median of the timed runs
    s_kv_bytes: float
    spread: float | None = None  # (max - min) / median of the timed runs; None: not recorded


@dataclass(frozen=True, slots=True)
class DecodePoint:
    batch_size: int
    context_tokens: int
    t_step_s: float  # median of the timed steps
    spread: float | None = None  # (max - min) / median of the timed steps; None: not recorded


@dataclass(frozen=True, slots=True)
class Measurement:
    """Where and how a profile was measured (written by `prfaas profile`; absent in version-1 files)."""

    device: str  # "cpu" or "cuda:<name>"
    torch_threads: int
    cpu_model: str
    load_avg_before: tuple[float, float, float]
    load_avg_after: tuple[float, float, float]
    num_cpus: int
    repeats: int
    decode_steps: int
    prfaas_version: str
    measured_at_utc: str
    warnings: tuple[str, ...] = ()  # quality problems accepted with --force

    def describe(self) -> str:
        return (f"{self.device}, {self.torch_threads} torch threads on {self.num_cpus} CPUs ({self.cpu_model}), "
                f"load {self.load_avg_before[0]:.2f} -> {self.load_avg_after[0]:.2f}, {self.repeats} repeats, "
                f"prfaas {self.prfaas_version}, {self.measured_at_utc}"
                + (f", {len(self.warnings)} accepted warning(s)" if self.warnings else ""))


@dataclass(frozen=True, slots=True)
class MeasuredProfile:
    """A measured cost profile of one instance (`n_gpu` devices of `device`) running `model`."""

    name: str
    model: str
    device: str
    n_gpu: int
    prefill: tuple[PrefillPoint, ...]
    decode: tuple[DecodePoint, ...] = ()
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    measurement: Measurement | None = None

    def __post_init__(self) -> None:
        if not self.prefill:
            raise ValueError(f"profile {self.name!r} has no prefill points")
        if self.n_gpu < 0:
            raise ValueError(f"profile {self.name!r}: n_gpu must be >= 0 (0: no accelerator)")
        lengths = [p.num_tokens for p in self.prefill]
        if lengths != sorted(set(lengths)):
            raise ValueError(f"profile {self.name!r}: prefill lengths must be strictly increasing")
        for p in self.prefill:
            if p.num_tokens <= 0 or p.t_prefill_s <= 0 or p.s_kv_bytes < 0:
                raise ValueError(f"profile {self.name!r}: point {p} has a non-positive value")
        for d in self.decode:
            if d.batch_size <= 0 or d.context_tokens < 0 or d.t_step_s <= 0:
                raise ValueError(f"profile {self.name!r}: decode point {d} is invalid")


def describe_profile(profile: MeasuredProfile) -> str:
    """One line naming a profile and what it was measured on (for reports that used it)."""
    where = profile.measurement.describe() if profile.measurement is not None else (
        f"{profile.device or 'unknown device'}, no measurement record (older profile)")
    max_spread = max((p.spread for p in profile.prefill if p.spread is not None), default=None)
    spread = f", prefill spread <= {max_spread:.0%}" if max_spread is not None else ""
    return f"{profile.name} ({profile.model}): {where}{spread}"


def fit_quadratic_nonneg(
    lengths: Sequence[float] | np.ndarray, times_s: Sequence[float] | np.ndarray
) -> tuple[float, float, float]:
    """Least-squares `a + b*l + c*l^2` with a, b, c >= 0 (active-set over the 7 sign patterns)."""
    x = [float(v) for v in lengths]
    y = [float(v) for v in times_s]
    basis = ([1.0] * len(x), x, [v * v for v in x])
    best: tuple[float, tuple[float, float, float]] | None = None
    for mask in ((1, 1, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1)):
        cols = [i for i, keep in enumerate(mask) if keep]
        if len(cols) > len(x):
            continue
        sol = least_squares([basis[i] for i in cols], y)  # the same bits on every machine (perf.lsq)
        if any(v < 0 for v in sol):
            continue
        coef = [0.0, 0.0, 0.0]
        for i, v in zip(cols, sol, strict=True):
            coef[i] = v
        err = squared_error(basis, coef, y)
        if best is None or err < best[0] - 1e-18:
            best = (err, (coef[0], coef[1], coef[2]))
    assert best is not None, "a single non-negative column always fits"
    return best[1]


_MEMO_MAX = 1 << 16  # memoised token counts per model (then the memo starts over)


class ProfilePrefillModel:
    """`PrefillCostModel` over a `MeasuredProfile` (see the module docstring for the interpolation)."""

    def __init__(self, profile: MeasuredProfile, interpolation: Interpolation = Interpolation.QUADRATIC_FIT) -> None:
        self.profile = profile
        self._lengths = np.array([p.num_tokens for p in profile.prefill], dtype=np.float64)
        self._times = np.array([p.t_prefill_s for p in profile.prefill], dtype=np.float64)
        self._sizes = np.array([p.s_kv_bytes for p in profile.prefill], dtype=np.float64)
        if interpolation is Interpolation.QUADRATIC_FIT and len(profile.prefill) < 3:
            interpolation = Interpolation.PIECEWISE_LINEAR
        self.interpolation = interpolation
        self.coefficients = fit_quadratic_nonneg(self._lengths, self._times)
        self._name = f"{profile.name} ({interpolation.value})"
        self._s_kv_memo: dict[float, float] = {}  # num_tokens -> s_kv_bytes (a simulator asks per request)

    @property
    def name(self) -> str:
        return self._name

    def _t_total_s(self, num_tokens: float) -> float:
        if self.interpolation is Interpolation.QUADRATIC_FIT:
            a, b, c = self.coefficients
            return a + b * num_tokens + c * num_tokens * num_tokens
        return _interp_extrapolate(num_tokens, self._lengths, self._times)

    @property
    def fixed_overhead_s(self) -> float:
        """The per-prefill overhead: the fit's intercept, or the first point's time when piecewise."""
        if self.interpolation is Interpolation.QUADRATIC_FIT:
            return self.coefficients[0]
        return float(min(self._times[0], _interp_extrapolate(0.0, self._lengths, self._times)))

    def t_prefill_s(self, num_tokens: float, num_cached_tokens: float = 0.0) -> float:
        if num_tokens <= 0:
            raise ValueError("num_tokens must be > 0")
        if num_cached_tokens <= 0:
            return max(self._t_total_s(num_tokens), 1e-9)
        incremental = self._t_total_s(num_cached_tokens + num_tokens) - self._t_total_s(num_cached_tokens)
        return max(self.fixed_overhead_s + incremental, self.fixed_overhead_s, 1e-9)

    def s_kv_bytes(self, num_tokens: float) -> float:
        memo = self._s_kv_memo
        size = memo.get(num_tokens)
        if size is None:
            size = max(_interp_extrapolate(num_tokens, self._lengths, self._sizes), 0.0)
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[num_tokens] = size
        return size

    def t_prefill_array_s(self, num_tokens: np.ndarray) -> np.ndarray:
        """Vectorised `t_prefill_s` for fresh prompts (no cached prefix)."""
        x = np.asarray(num_tokens, dtype=np.float64)
        if self.interpolation is Interpolation.QUADRATIC_FIT:
            a, b, c = self.coefficients
            return np.maximum(a + b * x + c * x * x, 1e-9)
        return np.maximum(np.array([_interp_extrapolate(float(v), self._lengths, self._times) for v in x]), 1e-9)

    def s_kv_array_bytes(self, num_tokens: np.ndarray) -> np.ndarray:
        """Vectorised `s_kv_bytes`."""
        x = np.asarray(num_tokens, dtype=np.float64)
        inside = np.interp(x, self._lengths, self._sizes)
        if self._lengths.size >= 2:
            hi_slope = (self._sizes[-1] - self._sizes[-2]) / (self._lengths[-1] - self._lengths[-2])
            lo_slope = (self._sizes[1] - self._sizes[0]) / (self._lengths[1] - self._lengths[0])
            inside = np.where(x > self._lengths[-1], self._sizes[-1] + hi_slope * (x - self._lengths[-1]), inside)
            inside = np.where(x < self._lengths[0], self._sizes[0] + lo_slope * (x - self._lengths[0]), inside)
        return np.maximum(inside, 0.0)


def _interp_extrapolate(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """Piecewise-linear interpolation that extends the first/last segment beyond the table."""
    if xs.size == 1:
        return float(ys[0] * x / xs[0]) if xs[0] > 0 else float(ys[0])
    if x <= xs[0]:
        slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
        return float(ys[0] + slope * (x - xs[0]))
    if x >= xs[-1]:
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return float(ys[-1] + slope * (x - xs[-1]))
    return float(np.interp(x, xs, ys))


class ProfileDecodeModel:
    """`DecodeCostModel` over measured decode points: t_step = a + b*batch + c*batch*context (least squares,
    non-negative), the shape of a memory-bound step (weights once, each request's state once)."""

    def __init__(self, profile: MeasuredProfile) -> None:
        if not profile.decode:
            raise ValueError(f"profile {profile.name!r} has no decode points")
        self.profile = profile
        batch = np.array([d.batch_size for d in profile.decode], dtype=np.float64)
        ctx = np.array([d.context_tokens for d in profile.decode], dtype=np.float64)
        times = np.array([d.t_step_s for d in profile.decode], dtype=np.float64)
        sol = least_squares([[1.0] * len(batch), batch.tolist(), (batch * ctx).tolist()], times.tolist())
        self.coefficients = tuple(float(max(v, 0.0)) for v in sol)
        if sum(self.coefficients) == 0.0:
            self.coefficients = (float(np.median(times)), 0.0, 0.0)

    @property
    def name(self) -> str:
        return f"{self.profile.name} (decode fit)"

    def t_step_s(self, batch_size: int, context_tokens: float) -> float:
        a, b, c = self.coefficients
        return a + b * batch_size + c * batch_size * context_tokens


# --- files -----------------------------------------------------------------------------------------


def profile_to_json_obj(profile: MeasuredProfile) -> dict[str, object]:
    return {
        "format": PROFILE_FORMAT,
        "version": PROFILE_VERSION,
        "name": profile.name,
        "model": profile.model,
        "device": profile.device,
        "n_gpu": profile.n_gpu,
        "source": profile.source,
        "notes": list(profile.notes),
        "prefill": [
            _with_spread({"num_tokens": p.num_tokens, "t_prefill_s": p.t_prefill_s, "s_kv_bytes": p.s_kv_bytes},
                         p.spread)
            for p in profile.prefill
        ],
        "decode": [
            _with_spread({"batch_size": d.batch_size, "context_tokens": d.context_tokens, "t_step_s": d.t_step_s},
                         d.spread)
            for d in profile.decode
        ],
        **({} if profile.measurement is None else {"measurement": _measurement_obj(profile.measurement)}),
    }


def _with_spread(obj: dict[str, object], spread: float | None) -> dict[str, object]:
    if spread is not None:
        obj["spread"] = spread
    return obj


def _measurement_obj(m: Measurement) -> dict[str, object]:
    return {
        "device": m.device, "torch_threads": m.torch_threads, "cpu_model": m.cpu_model,
        "load_avg_before": list(m.load_avg_before), "load_avg_after": list(m.load_avg_after),
        "num_cpus": m.num_cpus, "repeats": m.repeats, "decode_steps": m.decode_steps,
        "prfaas_version": m.prfaas_version, "measured_at_utc": m.measured_at_utc, "warnings": list(m.warnings),
    }


def _measurement_from(obj: object) -> Measurement | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise TypeError("'measurement' must be an object")

    def load3(key: str) -> tuple[float, float, float]:
        a, b, c = (float(v) for v in obj[key])
        return a, b, c

    return Measurement(
        device=str(obj["device"]), torch_threads=int(obj["torch_threads"]), cpu_model=str(obj["cpu_model"]),
        load_avg_before=load3("load_avg_before"), load_avg_after=load3("load_avg_after"),
        num_cpus=int(obj["num_cpus"]), repeats=int(obj["repeats"]), decode_steps=int(obj["decode_steps"]),
        prfaas_version=str(obj["prfaas_version"]), measured_at_utc=str(obj["measured_at_utc"]),
        warnings=tuple(str(w) for w in obj.get("warnings", [])),
    )


def _spread(obj: dict[str, object]) -> float | None:
    value = obj.get("spread")
    return None if value is None else float(value)  # type: ignore[arg-type]


def save_profile_json(profile: MeasuredProfile, path: str | Path) -> None:
    Path(path).write_text(json.dumps(profile_to_json_obj(profile), indent=2) + "\n")


def load_profile_json(path: str | Path) -> MeasuredProfile:
    """Read a profile file; any problem becomes a `ConfigError` naming the file (and line for JSON syntax)."""
    where = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read profile: {exc.strerror}", path=where) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc.msg}", path=where, line=exc.lineno) from None
    if not isinstance(obj, dict) or obj.get("format") != PROFILE_FORMAT:
        raise ConfigError(f"not a prfaas profile (expected \"format\": \"{PROFILE_FORMAT}\")", path=where)
    if obj.get("version") not in READABLE_VERSIONS:
        raise ConfigError(f"unsupported profile version {obj.get('version')!r} (this prfaas reads "
                          f"{', '.join(map(str, READABLE_VERSIONS))})", path=where)
    try:
        prefill = tuple(
            PrefillPoint(int(p["num_tokens"]), float(p["t_prefill_s"]), float(p["s_kv_bytes"]), _spread(p))
            for p in obj["prefill"]
        )
        decode = tuple(
            DecodePoint(int(d["batch_size"]), int(d["context_tokens"]), float(d["t_step_s"]), _spread(d))
            for d in obj.get("decode", [])
        )
        return MeasuredProfile(
            name=str(obj["name"]), model=str(obj.get("model", "")), device=str(obj.get("device", "")),
            n_gpu=int(obj.get("n_gpu", 1)), prefill=prefill, decode=decode, source=str(obj.get("source", "")),
            notes=tuple(str(n) for n in obj.get("notes", [])), measurement=_measurement_from(obj.get("measurement")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"malformed profile: {exc}", path=where) from None
