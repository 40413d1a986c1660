"""A link is reported down only after the grace period without any connection (not while connecting)."""

from __future__ import annotations

import socket
import time

import pytest

from prfaas.transport import KvSender, PeerAddress, SenderConfig
from prfaas.transport.peer_pool import LINK_DOWN_GRACE_S

pytestmark = pytest.mark.network


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens here once the socket is closed


def test_unreachable_peer_is_up_during_grace_then_down() -> None:
    peer = PeerAddress("127.0.0.1", _closed_port())
    config = SenderConfig(shared_secret=b"s" * 32, connections_per_peer=1, connect_timeout_s=0.5,
                          reconnect_backoff_max_s=0.2)
    with KvSender(config) as sender:
        sender.connect(peer)
        time.sleep(0.3)
        assert sender.link_snapshot(peer).is_up, "a pool still connecting must not be reported down"
        deadline = time.monotonic() + LINK_DOWN_GRACE_S + 30.0  # anti-hang bound
        while sender.link_snapshot(peer).is_up and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not sender.link_snapshot(peer).is_up
