"""Layer-wise pipelining with the real engine: how much transfer is left when prefill ends.

    python benchmarks/bench_transport_pipeline.py [--tokens 2048] [--runs 3] [--links none,1,0.2]

The prefill runs the embedded default model (Qwen3.5-style, 3 GDN : 1 full attention, 8 layers) in
this process; `PrefillEngine.prefill(on_layer_done=...)` hands each finished layer to
`OutboundTransfer.send_layer`, so layer i is on the wire while layers > i compute. The receiver is
a separate process over loopback. Link rates are emulated with the sender's token-bucket cap (Gbit/s;
"none" = uncapped loopback). For each link it reports the median prefill time and the tail from the
end of prefill (forward returned) to the last byte verified by the receiver, as % of prefill time,
pipelined vs sending the whole state after prefill.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_transport import SECRET, start_server
from prfaas.core.units import MIB_BYTES, gbps_to_bytes_per_s
from prfaas.transport import KvSender, PacingConfig, PeerAddress, SenderConfig


def run_once(engine: object, sender: KvSender, peer: PeerAddress, tokens: list[int], *, pipelined: bool,
             tag: str) -> tuple[float, float]:
    from prfaas.engine.state import uint8_view

    loaded = engine.loaded  # type: ignore[attr-defined]
    transfer = sender.begin(peer, tag, loaded.expected_layout(len(tokens)))

    def on_layer_done(index: int, part: object) -> None:
        transfer.send_layer(index, [uint8_view(t) for _, t in part.named_tensors()])  # type: ignore[attr-defined]

    start = time.perf_counter()
    _, state = engine.prefill(tokens, on_layer_done=on_layer_done if pipelined else None)  # type: ignore[attr-defined]
    prefill_end = time.perf_counter()
    if not pipelined:
        by_layer: dict[int, list[memoryview]] = {}
        for part in state.parts:
            by_layer[part.layer_index] = [uint8_view(t) for _, t in part.named_tensors()]
        for index, views in by_layer.items():
            transfer.send_layer(index, views)
    transfer.finish()
    transfer.result(120)
    return prefill_end - start, time.perf_counter() - prefill_end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--links", default="none,1,0.2", help="comma-separated Gbit/s caps; 'none' = uncapped")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the prefill")
    args = parser.parse_args()

    from prfaas.engine.models import load_model
    from prfaas.engine.prefill import PrefillEngine

    engine = PrefillEngine(load_model("default", num_threads=args.threads))
    rng = random.Random(0)
    tokens = [rng.randrange(3, engine.loaded.vocab_size) for _ in range(args.tokens)]
    layout = engine.loaded.expected_layout(len(tokens))
    last_layer_bytes = layout.layer_bytes(layout.layer_indices[-1])
    proc, ports = start_server("127.0.0.1", layout.total_bytes)
    peer = PeerAddress("127.0.0.1", ports["kv_port"])
    print(f"default model, {args.tokens} tokens, state {layout.total_bytes / MIB_BYTES:.2f} MiB "
          f"(last layer {last_layer_bytes / MIB_BYTES:.2f} MiB), torch threads {args.threads}, "
          f"{args.runs} runs, medians")
    print(f"{'link':<10}{'prefill s':>10}{'tail pipelined':>16}{'% prefill':>11}{'tail after-prefill':>20}"
          f"{'% prefill':>11}")
    try:
        engine.prefill(tokens[:64])  # warm-up
        for link in args.links.split(","):
            rate = None if link == "none" else gbps_to_bytes_per_s(float(link))
            config = SenderConfig(shared_secret=SECRET, connections_per_peer=2,
                                  pacing=PacingConfig(rate_bytes_per_s=rate), chunk_bytes=1 << 20)
            with KvSender(config) as sender:
                run_once(engine, sender, peer, tokens[:64], pipelined=True, tag=f"warm-{link}")
                samples: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
                for r in range(args.runs):
                    for pipelined in (True, False):
                        samples[pipelined].append(
                            run_once(engine, sender, peer, tokens, pipelined=pipelined, tag=f"{link}-{r}-{pipelined}"))
            prefill_s = statistics.median(p for p, _ in samples[True] + samples[False])
            tail_p = statistics.median(t for _, t in samples[True])
            tail_s = statistics.median(t for _, t in samples[False])
            name = "loopback" if rate is None else f"{link} Gb/s"
            print(f"{name:<10}{prefill_s:>10.3f}{tail_p * 1e3:>13.1f} ms{tail_p / prefill_s:>10.1%}"
                  f"{tail_s * 1e3:>17.1f} ms{tail_s / prefill_s:>10.1%}")
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


if __name__ == "__main__":
    main()
