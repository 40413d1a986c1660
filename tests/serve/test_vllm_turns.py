"""Prefills enter a vLLM instance in the regions' fair order (`serve.vllm_turns.PrefillTurns`): a token budget of
prefills inside vLLM, the rest waiting at the adapter in `FairQueue` order; withdrawn and cancelled waiters leave
no trace. Units here; the adapter against a fake vLLM in `test_vllm_node_turns.py`."""

from __future__ import annotations

import asyncio

import pytest

from prfaas.serve.vllm_turns import PrefillTurns, TurnDeadlinePassed, TurnWithdrawn

ANTI_HANG_S = 10.0


class Inside:
    """Prefills that hold their turn until released; records the order they entered."""

    def __init__(self, turns: PrefillTurns) -> None:
        self.turns = turns
        self.entered: list[str] = []
        self.waited: dict[str, float] = {}
        self._release: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, key: str, region: str, num_tokens: int, load: float | None = None,
              within_s: float | None = None) -> None:
        self._release[key] = asyncio.Event()

        async def run() -> None:
            async with self.turns.turn(key, region, num_tokens, load, within_s) as waited_s:
                self.entered.append(key)
                self.waited[key] = waited_s
                await self._release[key].wait()

        self.tasks[key] = asyncio.ensure_future(run())

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async def release(self, key: str) -> None:
        self._release[key].set()
        await asyncio.wait_for(self.tasks[key], ANTI_HANG_S)
        await self.settle()


def test_a_lone_regions_prefill_enters_after_the_running_one_not_after_the_burst() -> None:
    async def scenario() -> list[str]:
        inside = Inside(PrefillTurns(budget_tokens=1_000))
        inside.start("a0", "ra", 800)
        await inside.settle()
        for i in range(1, 5):
            inside.start(f"a{i}", "ra", 800)
        await inside.settle()
        inside.start("b0", "rb", 800)
        await inside.settle()
        assert inside.entered == ["a0"] and inside.turns.waiting == 5
        for key in ["a0", "b0", "a1", "a2", "a3"]:
            await inside.release(key)
        await inside.release("a4")
        assert inside.turns.inside == 0 and inside.turns.inside_tokens == 0 and inside.turns.waiting == 0
        assert inside.waited["a0"] < inside.waited["b0"]  # b0 waited (for a0), a0 did not
        return inside.entered

    assert asyncio.run(scenario()) == ["a0", "b0", "a1", "a2", "a3", "a4"]  # vLLM's first come: b0 last


def test_prefills_enter_together_within_the_budget_and_a_big_one_alone() -> None:
    async def scenario() -> None:
        inside = Inside(PrefillTurns(budget_tokens=1_000))
        for key in ("s0", "s1", "s2"):
            inside.start(key, "ra", 300)
        inside.start("big", "ra", 5_000)  # above the budget: waits until nothing is inside, then runs alone
        inside.start("s3", "ra", 100)  # fits the budget, but the head of the fair order waits first
        await inside.settle()
        assert inside.entered == ["s0", "s1", "s2"] and inside.turns.inside_tokens == 900
        await inside.release("s0")
        await inside.release("s1")
        assert inside.entered == ["s0", "s1", "s2"]  # big does not fit beside s2; s3 does not overtake it
        await inside.release("s2")
        assert inside.entered[-1] == "big" and inside.turns.inside == 1
        await inside.release("big")
        assert inside.entered[-1] == "s3"
        await inside.release("s3")

    asyncio.run(scenario())


def test_weights_give_a_backlogged_region_its_share_of_turns() -> None:
    async def scenario() -> list[str]:
        inside = Inside(PrefillTurns(budget_tokens=100, weights={"ra": 2.0, "rb": 1.0}))
        inside.start("first", "rc", 100)
        await inside.settle()
        keys = [f"a{i}" for i in range(6)] + [f"b{i}" for i in range(3)]
        for key in keys:
            inside.start(key, "r" + key[0], 100)
        await inside.settle()
        for released in range(len(keys) + 1):  # one inside at a time: each release lets the next in
            await inside.release(inside.entered[released])
        return inside.entered[1:]

    order = asyncio.run(scenario())
    assert [key[0] for key in order] == ["a", "b", "a", "a", "b", "a", "a", "b", "a"], order


def test_a_withdrawn_waiter_never_enters_and_lets_the_next_in() -> None:
    async def scenario() -> None:
        turns = PrefillTurns(budget_tokens=1_000)
        inside = Inside(turns)
        inside.start("a0", "ra", 900)
        inside.start("b0", "rb", 900)
        inside.start("c0", "rc", 50)
        await inside.settle()
        assert not turns.withdraw("a0")  # inside already: the vLLM call is what an abort cancels
        assert turns.withdraw("b0")
        with pytest.raises(TurnWithdrawn):
            await asyncio.wait_for(inside.tasks["b0"], ANTI_HANG_S)
        await inside.settle()
        assert inside.entered == ["a0", "c0"]  # b0, the head, gone: c0 fits beside a0
        assert not turns.withdraw("b0") and not turns.withdraw("nobody")
        await inside.release("a0")
        await inside.release("c0")
        assert turns.inside == turns.inside_tokens == turns.waiting == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_and_a_cancelled_prefill_free_everything() -> None:
    async def scenario() -> None:
        turns = PrefillTurns(budget_tokens=1_000)
        inside = Inside(turns)
        inside.start("a0", "ra", 900)
        inside.start("b0", "rb", 900)
        inside.start("b1", "rb", 900)
        await inside.settle()
        inside.tasks["b0"].cancel()  # its client went away while it waited
        await inside.settle()
        assert turns.waiting == 1 and inside.entered == ["a0"]
        inside.tasks["a0"].cancel()  # the prefill inside vLLM was cancelled: its tokens are freed
        await inside.settle()
        assert inside.entered == ["a0", "b1"] and turns.inside == 1 and turns.inside_tokens == 900
        await inside.release("b1")
        assert turns.inside == turns.inside_tokens == turns.waiting == 0

    asyncio.run(scenario())


def test_budget_zero_lets_every_prefill_in_at_once_and_a_negative_one_is_refused() -> None:
    async def scenario() -> None:
        turns = PrefillTurns(budget_tokens=0)
        inside = Inside(turns)
        for i in range(4):
            inside.start(f"a{i}", "ra", 100_000)
        await inside.settle()
        assert inside.entered == ["a0", "a1", "a2", "a3"] and turns.waiting == 0
        for i in range(4):
            await inside.release(f"a{i}")

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="budget_tokens"):
        PrefillTurns(budget_tokens=-1)


def test_a_waiter_whose_start_deadline_passes_leaves_unsent_and_the_order_goes_on() -> None:
    async def scenario() -> None:
        turns = PrefillTurns(budget_tokens=1_000)
        inside = Inside(turns)
        inside.start("a0", "ra", 900)
        inside.start("b0", "rb", 900, within_s=0.05)  # the gateway's admission deadline
        inside.start("c0", "rc", 900, within_s=ANTI_HANG_S)
        await inside.settle()
        with pytest.raises(TurnDeadlinePassed):
            await asyncio.wait_for(inside.tasks["b0"], ANTI_HANG_S)
        assert turns.waiting == 1 and inside.entered == ["a0"]
        await inside.release("a0")
        assert inside.entered == ["a0", "c0"]  # in before its own deadline
        await inside.release("c0")
        assert turns.inside == turns.inside_tokens == turns.waiting == 0

    asyncio.run(scenario())
