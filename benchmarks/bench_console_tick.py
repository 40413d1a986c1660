"""What the console costs the gateway's event loop: one sampler tick (build the frame, encode it, offer it to the
connected consoles), and the size of what it sends.

    python benchmarks/bench_console_tick.py [--nodes 3] [--consoles 4] [--ticks 200] [--repeats 5]

A control plane with `--nodes` registered nodes (no processes), 500 finished requests in the console's table and
one new request per tick; `--consoles` subscribers whose queues are drained after every tick. Prints the median and
the spread (min..max over `--repeats` runs of the per-run median) of the tick time, and the median frame and hello
sizes in bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.serve.config import default_config
from prfaas.serve.console_hub import ConsoleHub
from prfaas.serve.control import ControlPlane
from prfaas.serve.messages import NodeRegister
from prfaas.serve.metrics import GatewayMetrics


class _Gw:
    def __init__(self, n_nodes: int) -> None:
        self.metrics = GatewayMetrics()
        self.control = ControlPlane(default_config(), self.metrics)
        for i in range(n_nodes):
            cluster, role = ((ClusterKind.PRFAAS, Role.PRFAAS_PREFILL) if i % 3 == 0 else
                             (ClusterKind.PD, Role.PD_PREFILL if i % 3 == 1 else Role.PD_DECODE))
            self.control.register(NodeRegister(name=f"node-{i}", cluster=cluster, role=role,
                                               control_url="http://127.0.0.1:9", kv_host="127.0.0.1", kv_port=9,
                                               max_batch=32, pid=1, max_context_tokens=32768))


def _record(i: int) -> dict[str, object]:
    return {"id": i, "prompt_tokens": 2000, "uncached_tokens": 2000, "route": "prfaas", "reason": "long_offload",
            "prefill_s": 0.2, "queue_s": 0.01, "transfer_bytes": 4_000_000, "transfer_s": 0.05, "attempt": 0,
            "ttft_s": 0.3, "latency_s": 1.0, "completion_tokens": 16, "prefill_node": "node-0",
            "decode_node": "node-2", "finished_at_s": time.time()}


async def _run(n_nodes: int, n_consoles: int, ticks: int) -> tuple[float, int, int]:
    gw = _Gw(n_nodes)
    hub = ConsoleHub(gw)  # type: ignore[arg-type]
    for i in range(500):
        hub.on_request(_record(i))
    subs = [hub.subscribe() for _ in range(n_consoles)]
    hello = len(hub.hello())
    times, sizes = [], []
    for k in range(ticks):
        hub.on_request(_record(500 + k))
        t0 = time.perf_counter()
        hub.tick()
        times.append(time.perf_counter() - t0)
        for sub in subs:
            assert sub is not None
            sizes.append(len(sub.queue.get_nowait()))
    await hub.close()
    return statistics.median(times), int(statistics.median(sizes)) if sizes else 0, hello


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--consoles", type=int, default=4)
    ap.add_argument("--ticks", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    runs = [asyncio.run(_run(args.nodes, args.consoles, args.ticks)) for _ in range(args.repeats)]
    medians = [r[0] * 1e3 for r in runs]
    print(f"console tick, {args.nodes} nodes, {args.consoles} consoles, {args.ticks} ticks x {args.repeats} runs: "
          f"median {statistics.median(medians):.3f} ms (runs {min(medians):.3f}..{max(medians):.3f} ms); "
          f"frame {runs[0][1]} B, hello {runs[0][2]} B")


if __name__ == "__main__":
    main()
