"""A node process that corrupts KV chunks on the wire (EMULATION for `bench chaos`; never used in production).

    python -m prfaas.bench.fault_node --config run/config.json --name prfaas-0 --corrupt-seqs 0 --counts F

The very same `serve` node (model, control server, KV sender/receiver), except that its sender carries a
`transport.testing.LinkShim` that flips one byte in the listed chunk seqs of every transfer, on their first
`--corrupt-attempts` transmissions, and any transmission with `--corrupt-probability` (emulated chunk loss;
the source tensor is never touched). The receiver's checksum must reject
those chunks and the retransmission must be used instead. Every 0.5 s the node writes how many chunk sends
it corrupted to `--counts` (JSON), so the benchmark can show the fault really happened.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import ClassVar

from prfaas.serve.config import DeployConfig, load_config
from prfaas.serve.lifeline import watch_launcher
from prfaas.transport.testing import LinkShim, ShimRuntime

COUNTS_INTERVAL_S = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class _Corruption:
    seqs: frozenset[int]
    attempts: int
    probability: float


class _CountingShim(LinkShim):
    """A LinkShim whose runtimes are kept so this process can report what it corrupted."""

    runtimes: ClassVar[list[ShimRuntime]] = []  # one process, one list: this module is an entry point

    def start(self) -> ShimRuntime:
        runtime = super().start()
        _CountingShim.runtimes.append(runtime)
        return runtime


def _write_counts(path: Path) -> None:
    counts = {"corrupted_sends": sum(r.num_corrupted for r in _CountingShim.runtimes)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(counts), encoding="utf-8")
    tmp.replace(path)


def serve_fault_node(cfg: DeployConfig, name: str, corruption: _Corruption, counts_path: Path) -> None:
    from prfaas.serve.backend import make_backend
    from prfaas.serve.deploy_secrets import load_shared_secret
    from prfaas.serve.node import NodeServer
    from prfaas.transport.config import SenderConfig

    class FaultNodeServer(NodeServer):
        def _sender_config(self) -> SenderConfig:
            base = super()._sender_config()
            delay = base.shim.one_way_delay_s if base.shim is not None else 0.0
            shim = _CountingShim(one_way_delay_s=delay, corrupt_seqs=corruption.seqs,
                                 corrupt_attempts=corruption.attempts, corrupt_probability=corruption.probability)
            return dataclasses.replace(base, shim=shim)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {name}(fault) %(levelname)s %(name)s: %(message)s")
    secret = load_shared_secret(cfg.transport, os.environ)
    backend = make_backend(cfg.model, cfg.node(name).cluster)

    async def run() -> None:
        node = FaultNodeServer(cfg, name, backend, secret)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, node.stop)
        await node.start()

        async def report() -> None:
            while True:
                _write_counts(counts_path)
                await asyncio.sleep(COUNTS_INTERVAL_S)

        task = asyncio.create_task(report())
        await node.wait_closed()
        task.cancel()
        _write_counts(counts_path)

    asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="prfaas.bench.fault_node")
    parser.add_argument("--config", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--corrupt-seqs", default="0")
    parser.add_argument("--corrupt-attempts", type=int, default=1)
    parser.add_argument("--corrupt-probability", type=float, default=0.0)
    parser.add_argument("--counts", required=True)
    args = parser.parse_args(argv)
    watch_launcher()
    cfg = load_config(args.config)
    cfg.node(args.name)
    seqs = frozenset(int(s) for s in args.corrupt_seqs.split(",") if s.strip())
    corruption = _Corruption(seqs, args.corrupt_attempts, args.corrupt_probability)
    serve_fault_node(cfg, args.name, corruption, Path(args.counts))


if __name__ == "__main__":
    main()
