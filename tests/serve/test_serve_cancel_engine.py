"""Cancellation with the real engine (tiny default model, conftest's deployment): a client that leaves during a
3,000-token decode (the issue's `curl --max-time 3`) or during a stalled PrfaaS prefill stops it on the nodes, every
table is empty afterwards, and the same prompt then gives the same greedy completion as before."""

from __future__ import annotations

import pytest
from cancel_helpers import LeavingClient, held, node_tables, wait_until
from serve_helpers import complete

from prfaas.serve.launcher import Launcher

pytestmark = pytest.mark.network

PROMPT = list(range(10, 60))


def _nothing_held(dep: Launcher) -> bool:
    return not any(held(node_tables(dep, n.name)) for n in dep.cfg.nodes)


def test_engine_decode_and_prefill_are_cancelled_and_nothing_is_held(deployment: Launcher) -> None:
    dep = deployment
    reference = complete(dep.url, PROMPT, max_tokens=6)["choices"][0]["text"]
    decodes = node_tables(dep, "pd-1").decodes_cancelled_total
    client = LeavingClient(dep, {"model": "default", "prompt": PROMPT, "max_tokens": 3000, "temperature": 0})
    wait_until(lambda: node_tables(dep, "pd-1").running_batch == 1, "the request decodes", 120)
    client.leave()
    wait_until(lambda: node_tables(dep, "pd-1").running_batch == 0, "the decode batch is empty again", 120)
    assert node_tables(dep, "pd-1").decodes_cancelled_total == decodes + 1

    prefills = node_tables(dep, "prfaas-0").prefills_cancelled_total
    stalled = LeavingClient(dep, {"model": "default", "prompt": PROMPT, "max_tokens": 8, "temperature": 0},
                            {"x-prfaas-route": "prfaas", "x-prfaas-debug-stall-s": "600"})
    wait_until(lambda: node_tables(dep, "prfaas-0").live_attempts == 1, "the prefill runs (stalled)", 120)
    stalled.leave()
    wait_until(lambda: node_tables(dep, "prfaas-0").live_attempts == 0, "the prefill stopped", 120)
    assert node_tables(dep, "prfaas-0").prefills_cancelled_total == prefills + 1
    wait_until(lambda: _nothing_held(dep), "every node table is empty", 120)
    assert complete(dep.url, PROMPT, max_tokens=6)["choices"][0]["text"] == reference
    assert complete(dep.url, PROMPT, max_tokens=6, route="prfaas")["choices"][0]["text"] == reference
