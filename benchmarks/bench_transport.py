"""Throughput of a 256 MiB hybrid state over loopback: prfaas transport vs a raw-socket baseline, plain and TLS.

    python benchmarks/bench_transport.py [--mib 256] [--runs 5] [--connections 1,4] [--no-tls]

A receiver process (this script with --serve) holds a raw TCP server (recv_into a pre-allocated
buffer, then a 1-byte ack) and a KvReceiver (allocator: views over a pre-allocated buffer). The
sender (this process) moves the same bytes both ways in the same run, modes interleaved, and
reports medians; the ratio is each run's prfaas time over the raw time of the same round.
With TLS (the default deployment setting; --no-tls skips it) a second KvReceiver takes mutual TLS 1.3
with a dev CA made for the run, and each `tls` row is also given as a % of the plain prfaas row with
the same connections, round by round. --pace-gbps sets a token-bucket cap on the prfaas sender (the
netns benchmark uses it).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prfaas.core.layers import LayerKind
from prfaas.core.state_layout import StateLayout, TensorSpec
from prfaas.core.units import MIB_BYTES, gbps_to_bytes_per_s
from prfaas.transport import KvReceiver, KvSender, PacingConfig, PeerAddress, ReceiverConfig, SenderConfig
from prfaas.transport.manifest import as_byte_view
from prfaas.transport.tls import NodeCert, TlsFiles, client_context, node_file_names, server_context, write_dev_ca

SECRET = b"benchmark-secret-0123456789abcdef"
_LEN = struct.Struct("<Q")


def bench_layout(total_mib: int) -> StateLayout:
    """A Qwen3.5-like hybrid: full-attention K/V (bf16) every 4th layer, GDN state (fp32) + conv + 0-d
    counters elsewhere; the full-attention token count is set so the total is about `total_mib`."""
    num_layers = 48
    linear = [i for i in range(num_layers) if i % 4 != 3]
    linear_bytes = len(linear) * (8 * 128 * 128 * 4 + 4 * 1024 * 2 + 8)
    kv_per_token = (num_layers // 4) * 2 * (2 * 128 * 2)  # layers * (K, V) * heads * dim * bf16
    tokens = max(1, (total_mib * MIB_BYTES - linear_bytes) // kv_per_token)
    tensors: list[TensorSpec] = []
    for i in range(num_layers):
        if i % 4 == 3:
            for name in ("keys", "values"):
                tensors.append(TensorSpec(i, LayerKind.FULL_GQA, name, "bfloat16", (1, 2, tokens, 128)))
        else:
            tensors.append(TensorSpec(i, LayerKind.LINEAR, "conv", "bfloat16", (1, 1024, 4)))
            tensors.append(TensorSpec(i, LayerKind.LINEAR, "recurrent", "float32", (1, 8, 128, 128)))
            tensors.append(TensorSpec(i, LayerKind.LINEAR, "seen", "int64", ()))
    return StateLayout(tuple(tensors), num_tokens=tokens)


def slice_views(buffer: memoryview, layout: StateLayout) -> list[memoryview]:
    views, offset = [], 0
    for spec in layout.tensors:
        views.append(buffer[offset:offset + spec.nbytes])
        offset += spec.nbytes
    return views


# ------------------------------------------------------------------------------------------ server


def _raw_server(listener: socket.socket, buffer: memoryview) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            header = bytearray(_LEN.size)
            conn.recv_into(header, _LEN.size, socket.MSG_WAITALL)
            (length,) = _LEN.unpack(header)
            view, got = buffer[:length], 0
            while got < length:
                n = conn.recv_into(view[got:])
                if n == 0:
                    break
                got += n
            conn.sendall(b"k")


def tls_files(tls_dir: Path, node: str) -> TlsFiles:
    cert, key = node_file_names(node)
    return TlsFiles(tls_dir / "ca.pem", tls_dir / cert, tls_dir / key)


def serve(host: str, max_bytes: int, tls_dir: Path | None) -> None:
    buffer = memoryview(bytearray(max_bytes))
    listener = socket.create_server((host, 0))
    threading.Thread(target=_raw_server, args=(listener, buffer), daemon=True).start()
    kv_buffer = memoryview(bytearray(max_bytes))
    np.frombuffer(kv_buffer, dtype=np.uint8).fill(1)  # fault the pages in, as the raw run does for its buffer
    config = ReceiverConfig(shared_secret=SECRET, host=host, memory_budget_bytes=4 * max_bytes)
    receivers = {"kv_port": KvReceiver(config, lambda layout: slice_views(kv_buffer, layout), lambda *a: None)}
    if tls_dir is not None:  # same buffer: the plain and TLS modes never run at the same time
        tls_config = ReceiverConfig(shared_secret=SECRET, host=host, memory_budget_bytes=4 * max_bytes,
                                    ssl_context=server_context(tls_files(tls_dir, "receiver")))
        receivers["tls_port"] = KvReceiver(tls_config, lambda layout: slice_views(kv_buffer, layout),
                                           lambda *a: None)
    ports = {name: rx.start()[1] for name, rx in receivers.items()}
    print(json.dumps({"raw_port": listener.getsockname()[1], **ports}), flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin
    for receiver in receivers.values():
        receiver.close()
    listener.close()


# ------------------------------------------------------------------------------------------ client


def start_server(host: str, max_bytes: int, prefix: Sequence[str] = (),
                 tls_dir: Path | None = None) -> tuple[subprocess.Popen[str], dict[str, int]]:
    cmd = [*prefix, sys.executable, __file__, "--serve", "--host", host, "--max-bytes", str(max_bytes)]
    cmd += ["--tls-dir", str(tls_dir)] if tls_dir is not None else []
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("benchmark server failed to start")
    return proc, json.loads(line)


def raw_send(host: str, port: int, payload: memoryview) -> float:
    start = time.perf_counter()
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(_LEN.pack(payload.nbytes))
        sock.sendall(payload)
        if sock.recv(1) != b"k":
            raise RuntimeError("raw baseline receiver did not acknowledge")
    return time.perf_counter() - start


def kv_send(sender: KvSender, peer: PeerAddress, layout: StateLayout, views: list[memoryview], tag: str) -> float:
    start = time.perf_counter()
    transfer = sender.begin(peer, tag, layout)
    transfer.send_all(views)
    transfer.result(120)
    return time.perf_counter() - start


def make_sender(connections: int, pace_gbps: float | None, tls_dir: Path | None = None) -> KvSender:
    pacing = PacingConfig(rate_bytes_per_s=gbps_to_bytes_per_s(pace_gbps)) if pace_gbps else PacingConfig()
    context = client_context(tls_files(tls_dir, "sender")) if tls_dir is not None else None
    return KvSender(SenderConfig(shared_secret=SECRET, connections_per_peer=connections, pacing=pacing,
                                 transfer_deadline_s=300, ssl_context=context))


def warm_up(sender: KvSender, peer: PeerAddress, connections: int) -> None:
    deadline = time.monotonic() + 10
    sender.connect(peer)
    while time.monotonic() < deadline:
        pool = sender._pool(peer)
        if len(pool._conns) >= connections:
            break
        time.sleep(0.01)
    small = bench_layout(1)
    kv_send(sender, peer, small, slice_views(memoryview(bytearray(small.total_bytes)), small), "warm-up")


def run(host: str, args: argparse.Namespace, prefix: Sequence[str] = ()) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="prfaas-bench-tls-") as tmp:
        tls_dir = None if args.no_tls else Path(tmp)
        if tls_dir is not None:
            write_dev_ca(tls_dir, [NodeCert("sender"), NodeCert("receiver", (host,))])
        return _run(host, args, prefix, tls_dir)


def _run(host: str, args: argparse.Namespace, prefix: Sequence[str], tls_dir: Path | None) -> dict[str, list[float]]:
    layout = bench_layout(args.mib)
    source = np.random.default_rng(0).integers(0, 256, layout.total_bytes, dtype=np.uint8)
    flat = as_byte_view(source)
    views = slice_views(flat, layout)
    proc, ports = start_server(host, layout.total_bytes, prefix, tls_dir)
    times: dict[str, list[float]] = {"raw": []}
    try:
        modes = {f"prfaas x{n}": (make_sender(n, args.pace_gbps), PeerAddress(host, ports["kv_port"]), n)
                 for n in args.connections}
        if tls_dir is not None:
            modes |= {f"prfaas x{n} tls": (make_sender(n, args.pace_gbps, tls_dir),
                                           PeerAddress(host, ports["tls_port"]), n) for n in args.connections}
        for mode, (sender, peer, n) in modes.items():
            warm_up(sender, peer, n)
            times[mode] = []
        raw_send(host, ports["raw_port"], flat)  # fault the receiver's pages in once
        for r in range(args.runs):
            if not args.skip_raw:
                times["raw"].append(raw_send(host, ports["raw_port"], flat))
            for mode, (sender, peer, _) in modes.items():
                times[mode].append(kv_send(sender, peer, layout, views, f"run-{r}-{mode}"))
        for sender, _, _ in modes.values():
            sender.close()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
    return {k: v for k, v in times.items() if v}


def print_table(times: dict[str, list[float]], total_bytes: int, reference_gbps: float | None = None) -> None:
    raw = times.get("raw")
    head = f"{'mode':<14}{'median MiB/s':>14}{'Gbit/s':>9}{'min..max MiB/s':>20}"
    head += f"{'vs raw (median of ratios)':>28}{'best vs best raw':>18}" if raw else ""
    head += f"{'% of rate':>11}" if reference_gbps else ""
    head += f"{'tls vs plain':>14}" if any(m.endswith(" tls") for m in times) else ""
    print(head)
    for mode, samples in times.items():
        rates = [total_bytes / MIB_BYTES / t for t in samples]
        med = statistics.median(rates)
        gbit = med * MIB_BYTES * 8 / 1e9
        line = f"{mode:<14}{med:>14.0f}{gbit:>9.2f}{f'{min(rates):.0f}..{max(rates):.0f}':>20}"
        if raw:
            ratio = statistics.median(r / t for r, t in zip(raw, samples, strict=False))
            best = min(raw) / min(samples)
            line += f"{ratio:>27.1%} {best:>17.1%}"
        if reference_gbps:
            line += f"{gbit / reference_gbps:>10.1%}"
        plain = times.get(mode.removesuffix(" tls")) if mode.endswith(" tls") else None
        if plain:
            line += f"{statistics.median(p / t for p, t in zip(plain, samples, strict=False)):>14.1%}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--max-bytes", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    parser.add_argument("--pace-gbps", type=float, default=None)
    parser.add_argument("--skip-raw", action="store_true")
    parser.add_argument("--no-tls", action="store_true", help="skip the TLS rows")
    parser.add_argument("--tls-dir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--server-netns", default=None, help="run the receiver in this network namespace")
    parser.add_argument("--pin-cpus", type=lambda v: [int(x) for x in v.split(",")], default=None,
                        help="SENDER,RECEIVER: pin this process and the receiver process to one CPU each "
                             "(steadier numbers on a shared machine)")
    parser.add_argument("--reference-gbps", type=float, default=None, help="configured link rate for %% column")
    args = parser.parse_args()
    if args.serve:
        serve(args.host, args.max_bytes, args.tls_dir)
        return
    layout = bench_layout(args.mib)
    prefix = ["ip", "netns", "exec", args.server_netns] if args.server_netns else []
    if args.pin_cpus is not None:
        sender_cpu, receiver_cpu = args.pin_cpus
        os.sched_setaffinity(0, {sender_cpu})
        prefix += ["taskset", "-c", str(receiver_cpu)]
    pacing = f"pacing {args.pace_gbps} Gbit/s" if args.pace_gbps else "pacing off"
    print(f"state: {len(layout.tensors)} tensors, {layout.total_bytes / MIB_BYTES:.1f} MiB; "
          f"{args.runs} runs per mode, interleaved; receiver {args.host}; prfaas {pacing}"
          + (f"; sender on CPU {args.pin_cpus[0]}, receiver on CPU {args.pin_cpus[1]}" if args.pin_cpus else ""))
    print_table(run(args.host, args, prefix), layout.total_bytes, args.reference_gbps)


if __name__ == "__main__":
    main()
