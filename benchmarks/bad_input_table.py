"""The bad-input table of docs/api-errors.md, measured: each input sent to a live gateway, its status and message.

    python benchmarks/bad_input_table.py [--url http://127.0.0.1:8000] > table.md

Without `--url` it starts a tiny loopback deployment (`prfaas.bench.api_fuzz.tiny_api_config`). Prints a markdown
table: input, HTTP status, the error message (or what a 200 answered).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prfaas.bench.api_fuzz import tiny_api_config
from prfaas.serve.launcher import Launcher

COMPLETIONS, CHAT = "/v1/completions", "/v1/chat/completions"
BASE: dict[str, Any] = {"model": "default", "prompt": "The scheduler", "max_tokens": 4}
CHAT_BASE: dict[str, Any] = {"model": "default", "max_tokens": 4}


def _with(**fields: Any) -> bytes:
    return json.dumps({**BASE, **fields}).encode()


def _chat(**fields: Any) -> bytes:
    return json.dumps({**CHAT_BASE, **fields}).encode()


def _user(content: Any, role: str = "user") -> list[dict[str, Any]]:
    return [{"role": role, "content": content}]


# (what the row shows, path, body, extra headers)
CASES: list[tuple[str, str, bytes, dict[str, str]]] = [
    ('`max_tokens: 10000000` (prompt "0")', COMPLETIONS, _with(prompt="0", max_tokens=10_000_000), {}),
    ("`max_tokens: 10**12` (chat, `max_completion_tokens`)", CHAT,
     _chat(messages=_user("hi"), max_completion_tokens=10**12), {}),
    ("prompt of 17,000 token ids", COMPLETIONS, _with(prompt=[5] * 17_000), {}),
    ("`top_p: 5e-324`", COMPLETIONS, b'{"model":"default","prompt":"0","top_p":5e-324,"max_tokens":4}', {}),
    ("`temperature: 1e-46`", COMPLETIONS, b'{"model":"default","prompt":"0","temperature":1e-46,"max_tokens":4}', {}),
    ("invalid UTF-8 (`{\"prompt\":\"\\xff\"}` as raw bytes)", COMPLETIONS, b'{"model":"default","prompt":"\xff"}', {}),
    ("malformed JSON (`{\"model\": \"default\", \"prompt\": `)", COMPLETIONS, b'{"model": "default", "prompt": ', {}),
    ("JSON that is not an object (`[1, 2]`)", COMPLETIONS, b"[1, 2]", {}),
    ("10 MB body", COMPLETIONS, _with(prompt="x" * 10_000_000), {}),
    ("100,000 nested arrays", COMPLETIONS, b"[" * 100_000 + b"]" * 100_000, {}),
    ('wrong type: `max_tokens: "ten"`', COMPLETIONS, _with(max_tokens="ten"), {}),
    ("wrong type: `max_tokens: true`", COMPLETIONS, _with(max_tokens=True), {}),
    ("`max_tokens: 1.0, seed: -345.0` (integral floats)", COMPLETIONS, _with(max_tokens=1.0, seed=-345.0), {}),
    ("`max_tokens: 1.5`", COMPLETIONS, _with(max_tokens=1.5), {}),
    ("`max_tokens: 0`", COMPLETIONS, _with(max_tokens=0), {}),
    ("huge `stop` list (1,000 strings)", COMPLETIONS, _with(stop=[f"s{i}" for i in range(1000)]), {}),
    ('`stop: [""]`', COMPLETIONS, _with(stop=[""]), {}),
    ("`n: 2`", COMPLETIONS, _with(n=2), {}),
    ("`top_p: -0.5`", COMPLETIONS, _with(top_p=-0.5), {}),
    ("`temperature: 9`", COMPLETIONS, _with(temperature=9), {}),
    ("token ids outside the vocabulary (`[1, 2, 99999]`)", COMPLETIONS, _with(prompt=[1, 2, 99999]), {}),
    ("negative token id (`[-1]`)", COMPLETIONS, _with(prompt=[-1]), {}),
    ('empty prompt (`""`)', COMPLETIONS, _with(prompt=""), {}),
    ('`model: "nope"`', COMPLETIONS, _with(model="nope"), {}),
    ("missing `prompt`", COMPLETIONS, json.dumps({"model": "default"}).encode(), {}),
    ("`logprobs: 2`", COMPLETIONS, _with(logprobs=2), {}),
    ("`echo: true`", COMPLETIONS, _with(echo=True), {}),
    ("`best_of: 3`", COMPLETIONS, _with(best_of=3), {}),
    ("`presence_penalty: 0.5`", COMPLETIONS, _with(presence_penalty=0.5), {}),
    ("`presence_penalty: 0` (neutral)", COMPLETIONS, _with(presence_penalty=0), {}),
    ("unknown field `my_extension: 1`", COMPLETIONS, _with(my_extension=1), {}),
    ("chat `top_logprobs: 2`", CHAT, _chat(messages=_user("hi"), top_logprobs=2), {}),
    ('chat `tools: [...]`', CHAT, _chat(messages=_user("hi"), tools=[{"type": "function"}]), {}),
    ('chat `response_format: {"type": "json_object"}`', CHAT,
     _chat(messages=_user("hi"), response_format={"type": "json_object"}), {}),
    ('chat content part `{"type": "text"}` (no `text`)', CHAT, _chat(messages=_user([{"type": "text"}])), {}),
    ('chat content part `{"type": "image_url", ...}`', CHAT,
     _chat(messages=_user([{"type": "image_url", "image_url": {"url": "http://x"}}])), {}),
    ('chat `role: "robot"`', CHAT, _chat(messages=_user("hi", role="robot")), {}),
    ("chat `messages: []`", CHAT, _chat(messages=[]), {}),
    ("header `x-prfaas-route: moon`", COMPLETIONS, _with(), {"x-prfaas-route": "moon"}),
]


def send(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            reply = json.loads(resp.read())
            tokens, finish = reply["usage"]["completion_tokens"], reply["choices"][0]["finish_reason"]
            return resp.status, f"(answered: {tokens} tokens, finish_reason {finish})"
    except urllib.error.HTTPError as exc:
        error = json.loads(exc.read())["error"]
        extra = ", ".join(f"{k} `{error[k]}`" for k in ("param", "code") if error.get(k))
        return exc.code, error["message"] + (f" ({extra})" if extra else "")


def table(base_url: str) -> str:
    rows = ["| input | status | message |", "|---|---|---|"]
    for label, path, body, headers in CASES:
        status, message = send(f"{base_url}{path}", body, headers)
        message = message.replace("|", "\\|").replace("\n", " ")
        if len(message) > 300:
            message = message[:297] + "..."
        rows.append(f"| {label} (`{path}`) | {status} | {message} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="Ask this gateway instead of starting one.")
    args = parser.parse_args()
    if args.url:
        print(table(args.url))
        return
    with tempfile.TemporaryDirectory() as tmp, Launcher(tiny_api_config(), Path(tmp)) as deployment:
        deployment.wait_ready(timeout_s=300)
        print(table(deployment.url))


if __name__ == "__main__":
    main()
