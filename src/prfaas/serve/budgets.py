"""A node's budgets for what requests hold while they wait (`[budgets]` in the deploy config).

    refusal = prefill_refusal(budgets, queued_tokens, num_tokens)       # None, or why (the node answers 503)
    refusal = state_refusal(budgets, held_bytes, state_bytes)           # a kept or arrived state

What a request holds on a node, and its bound:
- its prompt, from the prefill call until the prefill ends: `queued_prompt_tokens` (all prompts of one node);
- its KV state in flight: the transport's `memory_budget_bytes` (receive buffers, admitted in FIFO order);
- its state kept (colocated) or arrived, waiting for the decode call and for room in the batch:
  `waiting_state_bytes` (the inbox plus the model thread's waiting admissions);
- prefix-cache snapshots: `model.prefix_cache_bytes`.
A cancelled request gives all of it back (`serve.node_cancel`); `GET /tables` on a node shows what is held.
"""

from __future__ import annotations

from prfaas.serve.config import BudgetSection


def prefill_refusal(budgets: BudgetSection, queued_tokens: int, num_tokens: int) -> str | None:
    if queued_tokens + num_tokens > budgets.queued_prompt_tokens:
        return (f"{queued_tokens} prompt tokens already wait for prefill here; {num_tokens} more exceed the "
                f"budget of {budgets.queued_prompt_tokens}")
    return None


def state_refusal(budgets: BudgetSection, held_bytes: int, state_bytes: int) -> str | None:
    if held_bytes + state_bytes > budgets.waiting_state_bytes:
        return (f"states of {held_bytes} B already wait for decode here; {state_bytes} B more exceed the budget "
                f"of {budgets.waiting_state_bytes} B")
    return None
