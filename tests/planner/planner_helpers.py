from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AffineCost:
    """T(l) = t0 + a*l, S(l) = s0 + b*l: closed forms are easy to write by hand."""

    t0_s: float
    per_token_s: float
    s0_bytes: float = 0.0
    per_token_bytes: float = 1000.0
    name: str = "affine"

    def t_prefill_s(self, num_tokens: float, num_cached_tokens: float = 0.0) -> float:
        return self.t0_s + self.per_token_s * num_tokens

    def s_kv_bytes(self, num_tokens: float) -> float:
        return self.s0_bytes + self.per_token_bytes * num_tokens
