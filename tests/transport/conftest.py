"""Fixtures for transport tests: a loopback receiver recording what it hands out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from transport_helpers import SECRET, Sink

from prfaas.transport import KvReceiver, ReceiverConfig


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def receiver(sink: Sink) -> Iterator[KvReceiver]:
    rx = KvReceiver(ReceiverConfig(shared_secret=SECRET, transfer_deadline_s=20.0), sink.allocate,
                    sink.on_complete, sink.on_failed)
    rx.start()
    try:
        yield rx
    finally:
        rx.close()
