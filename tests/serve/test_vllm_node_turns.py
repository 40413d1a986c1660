"""A vLLM adapter node sends its prefills into vLLM in the regions' fair order (`serve.vllm_turns` in
`serve.vllm_node`): an in-process PrfaaS adapter in a two-region topology, a fake vLLM whose prefills take 0.2 s
(tests/serve/fake_vllm.py), signed /prefill calls as the region gateways send them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fake_vllm import FakeCluster, FakeVllm, two_region_config

from prfaas.serve.control_auth import ControlAuth, RefusalRecorder
from prfaas.serve.messages import DecodeTarget, PrefillReply, PrefillRequest, SamplingMsg, decode, encode
from prfaas.serve.vllm_node import VllmNodeServer
from prfaas.transport.ports import free_port

SECRET = b"t" * 32
ANTI_HANG_S = 60.0
PROMPT_TOKENS = 800
HOLD_S = 0.2


def _config(tmp_path: Path, fake: FakeVllm, budget_tokens: int | None) -> Any:
    budget = "" if budget_tokens is None else f"vllm_prefill_tokens = {budget_tokens}\n"
    return two_region_config(tmp_path, fake, {"ra": free_port(), "rb": free_port()}, heartbeat_s=0.2,
                             prfaas_extra=budget)


async def _burst_then_lone(cfg: Any, gated: bool) -> tuple[dict[str, int], dict[str, float], int]:
    """ra sends a0..a4 at once, then rb sends b0 and ra a5 (`gated`: a5 is aborted while it waits for its turn):
    statuses and queue_s of the replies, and how many prefills waited for their turn."""
    node = VllmNodeServer(cfg, "pa-0", SECRET)
    await node.start()
    statuses: dict[str, int] = {}
    queue_s: dict[str, float] = {}
    target = DecodeTarget(name="ra-d", kv_host="127.0.0.1", kv_port=free_port())

    async def send(session: aiohttp.ClientSession, name: str, region: str) -> None:
        prompt = [100 + (i * 7 + len(name) * 13 + ord(name[-1])) % 800 for i in range(PROMPT_TOKENS)]
        msg = PrefillRequest(request_id=f"{name}-0", token_ids=prompt, sampling=SamplingMsg(max_tokens=2),
                             decode_target=target, route="prfaas", region=region)
        async with session.post(f"{node.control_url}/prefill", data=encode(msg)) as resp:
            body = await resp.read()
            statuses[name] = resp.status
            if resp.status == 200:
                queue_s[name] = decode(body, PrefillReply).queue_s

    async def until(check: Any) -> None:
        for _ in range(int(ANTI_HANG_S / 0.01)):
            if check():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("not reached")

    try:
        auth = ControlAuth(SECRET, RefusalRecorder())
        async with aiohttp.ClientSession(middlewares=(auth.client_middleware(),)) as session:
            calls = [asyncio.ensure_future(send(session, f"a{i}", "ra")) for i in range(5)]
            await until(lambda: node.in_flight == 5)
            calls.append(asyncio.ensure_future(send(session, "b0", "rb")))
            calls.append(asyncio.ensure_future(send(session, "a5", "ra")))
            await until(lambda: node.in_flight == 7)
            if gated:
                await until(lambda: node.turns.waiting == 6)
                # the heartbeat counts the prefills waiting here (the fake vLLM reports none waiting)
                assert node.heartbeat(with_cache_report=False).queued_requests == 6
                assert node.abort("a5-0")  # waiting for its turn: withdrawn, vLLM never sees it
            await asyncio.wait_for(asyncio.gather(*calls), ANTI_HANG_S)
        return statuses, queue_s, node.turns.waited_total
    finally:
        await node.close()


def _sent_order(fake: FakeVllm) -> list[str]:
    return [call.body["kv_transfer_params"]["prfaas"]["transfer_id"].removesuffix("-0") for call in fake.calls
            if call.body.get("kv_transfer_params")]


@pytest.fixture
def fake() -> Iterator[FakeVllm]:
    """A fake vLLM whose prefills (non-streamed completions) take HOLD_S."""
    started = FakeVllm(FakeCluster(), kv_port=free_port()).start()
    started.prefill_hold_s = HOLD_S
    yield started
    started.close()


def test_a_lone_regions_prefill_enters_vllm_after_the_running_one_not_after_the_burst(
        tmp_path: Path, fake: FakeVllm) -> None:
    statuses, queue_s, waited = asyncio.run(_burst_then_lone(_config(tmp_path, fake, 1_000), gated=True))
    assert _sent_order(fake) == ["a0", "b0", "a1", "a2", "a3", "a4"]  # vLLM's first come would put b0 after a4
    assert statuses == {**{f"a{i}": 200 for i in range(5)}, "b0": 200, "a5": 409}, statuses
    assert waited == 6
    # the reply's queue_s is the wait for the turn: b0 waited about one prefill, a4 about five
    assert queue_s["a0"] < 0.1 and 0.5 * HOLD_S < queue_s["b0"] < 3 * HOLD_S < queue_s["a4"]


def test_without_a_budget_every_prefill_goes_to_vllm_at_once(tmp_path: Path, fake: FakeVllm) -> None:
    statuses, queue_s, waited = asyncio.run(_burst_then_lone(_config(tmp_path, fake, 0), gated=False))
    assert _sent_order(fake)[-2:] == ["b0", "a5"] and waited == 0
    assert set(statuses.values()) == {200} and max(queue_s.values()) == 0.0


def test_the_default_budget_lets_short_prompts_in_together(tmp_path: Path, fake: FakeVllm) -> None:
    """16,384 tokens by default: the seven 800-token prefills all go to vLLM at once (nothing waits), so vLLM
    batches them as it would without the adapter."""
    cfg = _config(tmp_path, fake, None)
    statuses, queue_s, waited = asyncio.run(_burst_then_lone(cfg, gated=False))
    assert cfg.node("pa-0").vllm_prefill_tokens is None and waited == 0
    assert set(statuses.values()) == {200} and max(queue_s.values()) < 0.1
