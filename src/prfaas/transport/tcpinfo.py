"""Kernel TCP statistics of a socket (Linux `TCP_INFO`), degrading to None elsewhere.

Offsets into `struct tcp_info` (include/uapi/linux/tcp.h), stable since Linux 4.2:

    68  u32 tcpi_rtt            smoothed RTT, microseconds
    72  u32 tcpi_rttvar         microseconds
    80  u32 tcpi_snd_cwnd       segments
   100  u32 tcpi_total_retrans  retransmitted segments over the connection's life
   136  u32 tcpi_segs_out       segments sent (Linux >= 4.2)
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

TCP_INFO_BYTES = 232  # ask for more than we read; the kernel returns min(asked, its struct size)
_U32 = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class TcpInfo:
    rtt_us: int
    rttvar_us: int
    snd_cwnd: int
    total_retrans: int
    segs_out: int | None  # None on kernels that do not report it


def read_tcp_info(sock: socket.socket) -> TcpInfo | None:
    """The socket's TCP_INFO, or None when unavailable (not Linux, closed socket, short struct)."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, option, TCP_INFO_BYTES)
    except (OSError, ValueError):
        return None
    if len(raw) < 104:
        return None

    def u32(offset: int) -> int:
        return int(_U32.unpack_from(raw, offset)[0])

    segs_out = u32(136) if len(raw) >= 140 else None
    return TcpInfo(u32(68), u32(72), u32(80), u32(100), segs_out)
