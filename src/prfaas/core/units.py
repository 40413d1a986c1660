"""Unit conventions (those that reproduce arXiv 2604.15039 Table 5): bandwidth is decimal, sizes are binary.

1 Gbps = 1e9 bit/s; 1 MiB = 2**20 B. Names carry their unit: `_bytes`, `_gbps`, `_s`, `_tokens`.
"""

from __future__ import annotations

KIB_BYTES = 1024
MIB_BYTES = 1024**2
GIB_BYTES = 1024**3
BITS_PER_BYTE = 8
GBPS_BITS_PER_S = 1e9
TBPS_BITS_PER_S = 1e12
TFLOPS = 1e12


def bytes_per_s_to_gbps(rate_bytes_per_s: float) -> float:
    """Convert a byte rate to decimal gigabits per second."""
    return rate_bytes_per_s * BITS_PER_BYTE / GBPS_BITS_PER_S


def gbps_to_bytes_per_s(rate_gbps: float) -> float:
    """Convert decimal gigabits per second to bytes per second."""
    return rate_gbps * GBPS_BITS_PER_S / BITS_PER_BYTE


def mib(num_bytes: float) -> float:
    """Bytes to MiB."""
    return num_bytes / MIB_BYTES
