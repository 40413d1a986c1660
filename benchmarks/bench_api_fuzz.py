"""A long schemathesis run against a live deployment's OpenAI API: examples, status histogram, failures.

    python benchmarks/bench_api_fuzz.py [--examples 300] [--budget-s 1200] [--seed 0] [--url http://127.0.0.1:8000]

Without `--url` it starts a tiny loopback deployment (`prfaas.bench.api_fuzz.tiny_api_config`: gateway, PrfaaS
node, PD-P, PD-D). For every /v1/ operation, `--examples` schema-valid and `--examples` schema-invalid requests
(generated from the published /openapi.json; positive ones ask for at most 3 tokens) must get no 5xx, a documented
status and content type, a body matching the schema, and a 4xx for invalid data. The CI test
(tests/serve/test_serve_api_hardening.py) runs the same driver with 25 examples per case.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import urllib.request
from pathlib import Path

from prfaas.bench.api_fuzz import FuzzReport, fuzz_api, tiny_api_config
from prfaas.serve.launcher import Launcher


def context_limit(url: str) -> int:
    req = urllib.request.Request(f"{url}/v1/completions", method="POST", headers={"content-type": "application/json"},
                                 data=b'{"model": "default", "prompt": "0", "max_tokens": 1000000000000}')
    try:
        urllib.request.urlopen(req, timeout=30)
    except urllib.error.HTTPError as exc:
        match = re.search(r"maximum context length is (\d+)", exc.read().decode())
        if match:
            return int(match.group(1))
    raise SystemExit("the gateway did not report its context length")


def run(url: str, args: argparse.Namespace) -> FuzzReport:
    return fuzz_api(url, examples_per_case=args.examples, budget_s=args.budget_s, seed=args.seed,
                    context_tokens=context_limit(url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=300, help="Examples per operation and mode.")
    parser.add_argument("--budget-s", type=float, default=1200.0, help="Stop starting examples after this long.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--url", help="Fuzz this gateway instead of starting one.")
    args = parser.parse_args()
    if args.url:
        report = run(args.url, args)
    else:
        with tempfile.TemporaryDirectory() as tmp, Launcher(tiny_api_config(), Path(tmp)) as deployment:
            deployment.wait_ready(timeout_s=300)
            report = run(deployment.url, args)
    print(report.summary())
    print("error answers by mode, status and param/code:")
    for key, count in report.errors.most_common():
        print(f"  {count:5d}  {key}")
    if report.failures:
        raise SystemExit(f"{len(report.failures)} failures")


if __name__ == "__main__":
    main()
