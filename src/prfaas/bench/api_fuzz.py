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
    skipped: list[str] = field(default_factory=list)  # operation and mode with nothing to generate
    errors: Counter[str] = field(default_factory=Counter)  # "[mode] status param" of every error answer
    elapsed_s: float = 0.0

    def summary(self) -> str:
        lines = [f"{self.examples} examples in {self.elapsed_s:.1f} s, {len(self.failures)} failures"]
        for name, counts in sorted(self.statuses.items()):
            lines.append(f"  {name}: " + ", ".join(f"{code}: {n}" for code, n in sorted(counts.items())))
        lines += [f"  nothing to generate: {s}" for s in self.skipped]
        return "\n".join(lines + [f"  FAIL {f}" for f in self.failures[:20]])


def bound_generation(body: Any, context_tokens: int) -> None:
    """Ask for few tokens: cap a max_tokens the context allows, set an absent one, keep a huge one (a fast 400)."""
    if not isinstance(body, dict):
        return
    present = [k for k in _TOKEN_FIELDS if body.get(k) is not None]
    for key in present:
        value = body[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= context_tokens:
            body[key] = min(value, FUZZ_MAX_TOKENS)
    if not present:
        body["max_tokens"] = FUZZ_MAX_TOKENS


def tiny_api_config() -> Any:
    """A deployment on loopback with a tiny default model (4 layers, hidden 128): API checks, not model speed."""
    from prfaas.serve.config import ModelSection, PolicySection, default_config

    model = ModelSection(num_layers=4, hidden_size=128, max_batch_size=32)
    return default_config(model=model, policy=PolicySection(threshold_tokens=256, rebalance=False))


def _load_spec(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/openapi.json", timeout=30) as resp:
        spec: dict[str, Any] = msgspec.json.decode(resp.read())
    return spec


def fuzz_api(base_url: str, examples_per_case: int = 30, budget_s: float = 150.0, seed: int = 0,
             context_tokens: int = 16384, request_timeout_s: float = 60.0) -> FuzzReport:
    """Fuzz every /v1/ operation, positive then negative data, `examples_per_case` each, within `budget_s`
    (each operation and mode gets a share of it; examples past their share are not sent; the report counts the
    examples that ran)."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.core.result import Err

    schema = schemathesis.openapi.from_dict(_load_spec(base_url))
    report = FuzzReport()
    started = time.monotonic()
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # the published schema itself is broken: a failure, not a skip
            report.failures.append(f"invalid operation in /openapi.json: {result.err()}")
        else:
            operations.append(result.ok())
    cases = [(op, mode) for op in operations if op.path.startswith("/v1/")
             for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    end_s = started + budget_s
    for index, (operation, mode) in enumerate(cases):
        # each case gets an equal share of what is left, so every operation runs even when the budget is tight
        case_end_s = time.monotonic() + max(0.0, end_s - time.monotonic()) / (len(cases) - index)
        name = f"{operation.method.upper()} {operation.path}"
        run = _fuzz_case(operation, mode, name, report, base_url, context_tokens, request_timeout_s, case_end_s)
        test = settings(max_examples=examples_per_case, deadline=None, database=None, phases=[Phase.generate],
                        suppress_health_check=list(HealthCheck))(hypothesis_seed(seed)(run))
        try:
            test()
        except Unsatisfiable:  # nothing to generate (GET /v1/models has no schema-invalid request)
            report.skipped.append(f"{name} [{mode.value}]")
    return _finish(report, started)


def _fuzz_case(operation: Any, mode: Any, name: str, report: FuzzReport, base_url: str, context_tokens: int,
               request_timeout_s: float, deadline_s: float) -> Any:
    """A Hypothesis test sending one generated request of `operation` and recording status and failures."""
    from hypothesis import given
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.core.failures import FailureGroup

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    if mode is GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)
    statuses = report.statuses.setdefault(name, Counter())

    @given(case=operation.as_strategy(generation_mode=mode))
    def one(case: Any) -> None:
        if time.monotonic() > deadline_s:
            return
        bound_generation(case.body, context_tokens)
        response = case.call(base_url=base_url, timeout=request_timeout_s)
        report.examples += 1
        statuses[response.status_code] += 1
        if response.status_code >= 400:
            report.errors[f"[{mode.value}] {response.status_code} {_error_param(response.content)}"] += 1
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as exc:
            body = case.body if isinstance(case.body, (dict, list, str)) else repr(case.body)
            report.failures.append(f"{name} [{mode.value}] {response.status_code}: "
                                   f"{_failure_titles(exc)} body={str(body)[:300]}")

    return one


def _error_param(content: bytes) -> str:
    try:
        error = msgspec.json.decode(content)["error"]
        return str(error.get("code") or error.get("param") or error["message"][:40])
    except (msgspec.DecodeError, KeyError, TypeError):
        return "(not an OpenAI error body)"


def _failure_titles(exc: Any) -> str:
    return "; ".join(f"{type(f).__name__}: {getattr(f, 'title', '')} {str(getattr(f, 'message', ''))[:200]}"
                     for f in getattr(exc, "exceptions", [exc]))


def _finish(report: FuzzReport, started: float) -> FuzzReport:
    report.elapsed_s = time.monotonic() - started
    return report
