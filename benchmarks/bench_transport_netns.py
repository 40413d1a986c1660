"""Goodput over a rate-limited link between two network namespaces (root only; STACK.md §8.2).

    sudo python benchmarks/bench_transport_netns.py [--rate-mbit 1000] [--mib 64] [--runs 3]

Builds namespaces a and b joined by a veth pair with `tc tbf rate R` on a's egress, runs the
receiver in b and the sender (benchmarks/bench_transport.py) in a, and prints goodput as a
percentage of R: the raw-socket baseline and prfaas with 1 and 4 connections, plain and over mutual
TLS 1.3 (with a `tls vs plain` column), with pacing off and with the token-bucket cap at
`--pace-fraction` of R. The namespaces are always deleted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from prfaas.transport.testing import netns_pair, netns_supported

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate-mbit", type=float, default=1000.0)
    parser.add_argument("--pace-fraction", type=float, default=0.97)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not netns_supported():
        print("skipped: needs root plus the ip and tc tools")
        return
    rate_gbps = args.rate_mbit / 1000
    with netns_pair(rate_mbit=args.rate_mbit) as pair:
        print(f"link: veth {pair.ns_a} -> {pair.ns_b}, tc tbf rate {args.rate_mbit:g} Mbit/s (burst 256 KiB)")
        for pace in (None, args.pace_fraction * rate_gbps):
            cmd = [*pair.exec_prefix(pair.ns_a), sys.executable, str(HERE / "bench_transport.py"),
                   "--host", pair.addr_b, "--server-netns", pair.ns_b, "--mib", str(args.mib),
                   "--runs", str(args.runs), "--reference-gbps", str(rate_gbps)]
            if pace is not None:
                cmd += ["--pace-gbps", f"{pace:.4f}"]
            print(flush=True)
            subprocess.run(cmd, check=True, timeout=900)


if __name__ == "__main__":
    main()
