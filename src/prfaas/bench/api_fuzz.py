"""Property-based fuzzing of a live gateway's OpenAI API with schemathesis, from the schema it publishes.

    report = fuzz_api("http://127.0.0.1:8000", examples_per_case=40, budget_s=120)
    report.failures        # [] when every answer conformed; report.statuses: {"POST /v1/completions": {200: 31, ...}}

For every `/v1/` operation in `/openapi.json`, schema-valid (positive) and schema-invalid (negative) requests are
generated and sent; each answer must not be a 5xx, must use a documented status and content type, must match the
documented body schema, and a schema-invalid request must be refused (4xx). Generated bodies keep their meaning but
ask for few tokens (`bound_generation`) so each example is fast: a max_tokens the context allows is capped at
`FUZZ_MAX_TOKENS` and an absent one is set to it; a larger value is left alone (it gets the fast 400). Failures are
collected, not raised, so one run reports them all. Imports schemathesis (the `dev` extra).
"""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

FUZZ_MAX_TOKENS = 3
_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")


@dataclass
class FuzzReport:
    examples: int = 0
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def summary(self) -> str:
        lines = [f"{self.examples} examples in {self.elapsed_s:.1f} s, {len(self.failures)} failures"]
        for name, counts in sorted(self.statuses.items()):
            lines.append(f"  {name}: " + ", ".join(f"{code}: {n}" for code, n in sorted(counts.items())))
        return "\n".join(lines + [f"  FAIL {f}" for f in self.failures[:20]])


def bound_generation(body: Any, context_tokens: int) -> None:
    """Ask for few tokens: cap a max_tokens the context allows, set an absent one, keep a huge one (a fast 400)."""
    if not isinstance(body, dict):
        return
    present = [k for k in _TOKEN_FIELDS if k in body]
    for key in present:
        value = body[key]
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= context_tokens:
            body[key] = min(value, FUZZ_MAX_TOKENS)
    if not present:
        body["max_tokens"] = FUZZ_MAX_TOKENS


def _load_spec(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/openapi.json", timeout=30) as resp:
        spec: dict[str, Any] = msgspec.json.decode(resp.read())
    return spec


def fuzz_api(base_url: str, examples_per_case: int = 30, budget_s: float = 150.0, seed: int = 0,
             context_tokens: int = 16384, request_timeout_s: float = 60.0) -> FuzzReport:
    """Fuzz every /v1/ operation, positive then negative data, `examples_per_case` each, within `budget_s`
    (cases not started when the budget runs out are skipped; the report says how many examples ran)."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, seed as hypothesis_seed, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.core.failures import FailureGroup

    schema = schemathesis.openapi.from_dict(_load_spec(base_url))
    report = FuzzReport()
    started = time.monotonic()
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    operations = [op.ok() for op in schema.get_all_operations()]
    for operation in operations:
        if not operation.path.startswith("/v1/"):
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if time.monotonic() - started > budget_s:
                return _finish(report, started)
            name = f"{operation.method.upper()} {operation.path}"
            statuses = report.statuses.setdefault(name, Counter())
            mode_checks = checks + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

            @hypothesis_seed(seed)
            @settings(max_examples=examples_per_case, deadline=None, database=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def one(case: Any, name: str = name, statuses: Counter[int] = statuses,
                    mode_checks: list[Any] = mode_checks, mode: Any = mode) -> None:
                if time.monotonic() - started > budget_s:
                    return
                bound_generation(case.body, context_tokens)
                response = case.call(base_url=base_url, timeout=request_timeout_s)
                report.examples += 1
                statuses[response.status_code] += 1
                try:
                    case.validate_response(response, checks=mode_checks)
                except FailureGroup as exc:
                    body = case.body if isinstance(case.body, (dict, list, str)) else repr(case.body)
                    report.failures.append(f"{name} [{mode.value}] {response.status_code}: "
                                           f"{str(exc).strip().splitlines()[0]} body={str(body)[:300]}")

            one()
    return _finish(report, started)


def _finish(report: FuzzReport, started: float) -> FuzzReport:
    report.elapsed_s = time.monotonic() - started
    return report
