"""prfaas on vLLM: colocated vLLM vs vLLM P/D through the prfaas connector vs vLLM's own P/D (NixlConnector), on
loopback and across two emulated sites joined by a tbf-capped link, in one run on the same tiny model.

    python benchmarks/bench_vllm.py [--family llama] [--runs 3] [--prompt-tokens 2048] [--cap-mbit 200] [--no-nixl]

Per mode, per run: `--requests` sequential requests (fresh prompts, greedy, `--output-tokens` tokens) for the latency
numbers, then `--concurrency` concurrent requests for throughput.
- TTFT: client-side time to token 0 (P/D: the prefill instance's answer; colocated: the first streamed token).
- D-start: time from the (streamed) decode call to the decode instance's first token: what the decode side waits
  for the state (prfaas streamed it layer by layer during the prefill; NIXL pulls it after the prefill). NIXL's
  decode recomputes the last prompt position and yields token 0 again; prfaas's decode computes token 0's position
  and yields token 1: either way one forward of one position after the state is in place.
- connector overhead: prefill latency with the transfer vs the same prefill without one, same instance, % .
- bytes: KV bytes on the wire (connector counters) vs S_kv(l) of the catalog for the architecture.
Sites need root (network namespaces + tc); without, only loopback runs. Medians over runs, [min, max].
Needs the vLLM venv (`prfaas vllm install --nixl`).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prfaas.integrations.vllm import venv as vllm_venv
from prfaas.integrations.vllm.catalog_arch import arch_from_config
from prfaas.integrations.vllm.harness import VllmServers, free_ports, http_json
from prfaas.integrations.vllm.launch import VllmServerSpec
from prfaas.integrations.vllm.params import RecvParams, SendParams, to_params
from prfaas.perf.arch import s_kv_bytes

_ids = itertools.count()


def _prompt(n: int, salt: int) -> list[int]:
    return [(i * 7919 + salt * 104729) % 500 + 3 for i in range(n)]


class Site:
    """Where a server runs: its address and how to call into it (a namespace or the host)."""

    def __init__(self, addr: str, ns: str | None) -> None:
        self.addr, self.ns = addr, ns

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        if self.ns is None:
            yield
            return
        from prfaas.bench.netns import entered

        with entered(self.ns):
            yield

    def prefix(self) -> tuple[str, ...]:
        return () if self.ns is None else ("ip", "netns", "exec", self.ns)


def _post(site: Site, port: int, model: str, body: dict[str, Any]) -> dict[str, Any]:
    with site.inside():
        return http_json(f"http://{site.addr}:{port}/v1/completions",
                         {"model": model, "temperature": 0, "return_token_ids": True, **body})


def _stream_ttft(site: Site, port: int, model: str, prompt: list[int], max_tokens: int,
                 extra: dict[str, Any] | None = None) -> tuple[float, float]:
    """(time to first token, total time) of a streamed completion."""
    import urllib.request

    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                       "stream": True, "return_token_ids": True, **(extra or {})}).encode()
    with site.inside():
        start = time.perf_counter()
        req = urllib.request.Request(f"http://{site.addr}:{port}/v1/completions", body,
                                     {"Content-Type": "application/json"})
        first = None
        with urllib.request.urlopen(req, timeout=600) as resp:
            for line in resp:
                if line.startswith(b"data:") and first is None and b"token_ids" in line:
                    first = time.perf_counter() - start
        return (first or 0.0), time.perf_counter() - start


class Mode:
    """One way of serving a request: colocated, prfaas P/D or NIXL P/D."""

    def __init__(self, name: str, model: str, p: tuple[Site, int], d: tuple[Site, int],
                 d_kv: tuple[str, int] | None = None) -> None:
        self.name, self.model, self.p, self.d, self.d_kv = name, model, p, d, d_kv

    def one(self, prompt: list[int], out_tokens: int) -> dict[str, float]:
        if self.name == "colocated":
            ttft, total = _stream_ttft(*self.d, self.model, prompt, out_tokens)
            return {"ttft_s": ttft, "total_s": total}
        start = time.perf_counter()
        if self.name == "prfaas":
            tid = f"b{next(_ids)}"
            assert self.d_kv is not None
            send = SendParams(transfer_id=tid, peer_host=self.d_kv[0], peer_port=self.d_kv[1])
            pre = _post(*self.p, self.model, {"prompt": prompt, "max_tokens": 1, "kv_transfer_params": to_params(send)})
            ttft = time.perf_counter() - start
            first = pre["choices"][0]["token_ids"]
            recv = to_params(RecvParams(transfer_id=tid, num_tokens=len(prompt)))
            d_start, _ = _stream_ttft(*self.d, self.model, prompt + first, out_tokens - 1,
                                      {"kv_transfer_params": recv})
            return {"ttft_s": ttft, "d_start_s": d_start, "total_s": time.perf_counter() - start}
        # nixl: prefill holds the blocks; the decode instance pulls them when its request arrives
        pre = _post(*self.p, self.model, {"prompt": prompt, "max_tokens": 1,
                                          "kv_transfer_params": {"do_remote_decode": True}})
        ttft = time.perf_counter() - start
        d_start, _ = _stream_ttft(*self.d, self.model, prompt, out_tokens,
                                  {"kv_transfer_params": pre["kv_transfer_params"]})
        return {"ttft_s": ttft, "d_start_s": d_start, "total_s": time.perf_counter() - start}


def _median_spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(mode: Mode, args: argparse.Namespace, salt: int) -> dict[str, float]:
    rows = [mode.one(_prompt(args.prompt_tokens, salt * 1000 + i), args.output_tokens)
            for i in range(args.requests)]
    out = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    prompts = [_prompt(args.prompt_tokens, salt * 1000 + 500 + i) for i in range(args.concurrency)]
    start = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(lambda p: mode.one(p, args.output_tokens), prompts))
    wall = time.perf_counter() - start
    out["throughput_tok_s"] = args.concurrency * args.output_tokens / wall
    out["throughput_prompt_tok_s"] = args.concurrency * args.prompt_tokens / wall
    return out


def connector_overhead(site: Site, port: int, model: str, d_kv: tuple[str, int], n: int, reps: int,
                       salt: int) -> float:
    """Prefill latency with a transfer over without one (fresh prompts, alternating), in %."""
    with_t, without = [], []
    for i in range(reps):
        t0 = time.perf_counter()
        _post(site, port, model, {"prompt": _prompt(n, salt + 2 * i), "max_tokens": 1})
        without.append(time.perf_counter() - t0)
        send = SendParams(transfer_id=f"o{next(_ids)}", peer_host=d_kv[0], peer_port=d_kv[1])
        t0 = time.perf_counter()
        _post(site, port, model, {"prompt": _prompt(n, salt + 2 * i + 1), "max_tokens": 1,
                                  "kv_transfer_params": to_params(send)})
        with_t.append(time.perf_counter() - t0)
    return 100.0 * (statistics.median(with_t) / statistics.median(without) - 1.0)


def run_setup(label: str, venv: Path, root: Path, model: str, p_site: Site, d_site: Site, args: argparse.Namespace,
              log: Callable[[str], None]) -> dict[str, Any]:
    """All servers of a setup up at once (prfaas pair and NIXL pair), the modes interleaved within each run, so
    that every mode sees the same machine load."""
    secret = root / f"{label}-kv.secret"
    secret.write_text(secrets.token_hex(32))
    ports = free_ports(10)
    common = dict(model=model, secret_file=secret, max_model_len=args.prompt_tokens + args.output_tokens + 64,
                  dtype="bfloat16", kv_cache_gib=1.0)

    def spec(i: int, name: str, site: Site, bind: str, connector: str = "prfaas", telemetry: int = 0) -> VllmServerSpec:
        return VllmServerSpec(port=ports[i], kv_port=ports[i + 1], telemetry_port=telemetry, node_name=name,
                              host=site.addr, kv_host=site.addr, cpu_threads_bind=bind, connector=connector,
                              exec_prefix=site.prefix(), **common)

    specs = [spec(0, "p", p_site, "0", telemetry=ports[8]), spec(2, "d", d_site, "1", telemetry=ports[9])]
    if not args.no_nixl:
        specs += [spec(4, "pn", p_site, "0", "nixl"), spec(6, "dn", d_site, "1", "nixl")]
    results: dict[str, Any] = {}
    sites = {spec.port: (p_site if spec.node_name in ("p", "pn") else d_site) for spec in specs}
    with VllmServers(venv, root / label, specs, inside=lambda spec: sites[spec.port].inside()) as servers:
        log(f"[{label}] starting {len(specs)} vLLM servers")
        log(f"[{label}] ready in {servers.wait_ready(1800):.0f} s")
        modes = [Mode("colocated", model, (p_site, specs[0].port), (d_site, specs[1].port)),
                 Mode("prfaas", model, (p_site, specs[0].port), (d_site, specs[1].port),
                      (d_site.addr, specs[1].kv_port))]
        if not args.no_nixl:
            # a fresh NIXL decode instance crashes if its first request is a transferred one (STACK.md §10)
            _post(d_site, specs[3].port, model, {"prompt": _prompt(64, 997), "max_tokens": 2})
            modes.append(Mode("nixl", model, (p_site, specs[2].port), (d_site, specs[3].port)))
        for mode in modes:
            mode.one(_prompt(64, 998), 2)  # warm-up

        def bytes_sent() -> int:
            with p_site.inside():
                doc = http_json(f"http://127.0.0.1:{specs[0].telemetry_port}/prfaas/telemetry")  # in its namespace
            return int(doc["counters"]["bytes_sent"])

        before = bytes_sent()
        modes[1].one(_prompt(args.prompt_tokens, 4242), 2)
        results["bytes_on_wire"] = bytes_sent() - before
        runs: dict[str, list[dict[str, float]]] = {mode.name: [] for mode in modes}
        overhead = []
        for r in range(args.runs):
            for k, mode in enumerate(modes):
                runs[mode.name].append(measure(mode, args, salt=r * 10 + k))
                log(f"[{label}] run {r + 1}/{args.runs} {mode.name}: "
                    f"{ {key: round(v, 4) for key, v in runs[mode.name][-1].items()} }")
            overhead.append(connector_overhead(p_site, specs[0].port, model, (d_site.addr, specs[1].kv_port),
                                               args.prompt_tokens, 3, salt=7000 + 100 * r))
        with p_site.inside():
            sent = http_json(f"http://127.0.0.1:{specs[0].telemetry_port}/prfaas/telemetry")["counters"]
        results["send_s_per_transfer"] = sent["send_seconds_total"] / max(1, sent["sends_done"])
        results["overhead_pct"] = _median_spread(overhead)
        for name, rows in runs.items():
            results[name] = {k: _median_spread([row[k] for row in rows]) for k in rows[0]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="llama")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=2048)
    parser.add_argument("--output-tokens", type=int, default=16)
    parser.add_argument("--cap-mbit", type=float, default=200.0)
    parser.add_argument("--no-nixl", action="store_true")
    parser.add_argument("--no-sites", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    venv = vllm_venv.require()
    root = Path(tempfile.mkdtemp(prefix="bench-vllm-"))
    model = root / f"ckpt-{args.family}"
    import subprocess

    subprocess.run([str(vllm_venv.venv_python(venv)), "-m", "prfaas.integrations.vllm.checkpoints", args.family,
                    str(model)], env={"PYTHONPATH": str(vllm_venv.package_path_dir(root)), "PATH": "/usr/bin:/bin",
                                      "HOME": str(Path.home())}, check=True, capture_output=True)
    arch = arch_from_config(json.loads((model / "config.json").read_text()))
    lock = threading.Lock()

    def log(msg: str) -> None:
        with lock:
            print(msg, flush=True)

    report: dict[str, Any] = {"family": args.family, "prompt_tokens": args.prompt_tokens,
                              "catalog_s_kv_bytes": s_kv_bytes(arch, args.prompt_tokens), "args": vars(args) | {
                                  "out": str(args.out)}, "load_avg_at_start": os.getloadavg()}
    host = Site("127.0.0.1", None)
    report["loopback"] = run_setup("loopback", venv, root, str(model), host, host, args, log)
    from prfaas.bench.netns import can_emulate

    ok, why = can_emulate()
    if ok and not args.no_sites:
        from prfaas.bench.sites import SitesSpec, two_sites

        with two_sites(SitesSpec(cap_mbit=args.cap_mbit)) as sites:
            info = sites.info
            report["sites"] = run_setup("sites", venv, root, str(model), Site(info.prfaas_addr, info.prfaas_ns),
                                        Site(info.local_addr, info.local_ns), args, log)
            report["sites"]["cap_mbit"] = args.cap_mbit
    else:
        report["sites"] = {"skipped": why or "--no-sites"}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
