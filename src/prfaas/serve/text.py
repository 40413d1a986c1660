"""Tokenizers for the gateway and incremental detokenization with stop strings.

    tokenizer = load_tokenizer(cfg.model)
    ids = encode_prompt(tokenizer, "text")  /  encode_chat(tokenizer, [(role, text), ...])
    stream = TextStream(tokenizer, stop=["\\n\\n"])
    delta = stream.push(token_ids)          # new text safe to emit now
    tail = stream.finish()                   # whatever was held back
    stream.stopped                           # a stop string was met (text cut before it)

Byte-level BPE can end a prefix in the middle of a UTF-8 character; such a tail (U+FFFD) is held back, as is
anything that could still become a stop string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prfaas.serve.config import EngineKind, ModelSection


def load_tokenizer(model: ModelSection) -> Any:
    """The tokenizer the nodes use, loaded without the model (no download: HF_HUB_OFFLINE)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if model.name in ("default", "stub") or model.engine is EngineKind.EMULATED:
        from prfaas.engine.tokenizer import load_default_tokenizer

        return load_default_tokenizer()
    from transformers import AutoTokenizer

    if model.name == "smollm2":
        from prfaas.engine.smollm2 import converted_dir

        return AutoTokenizer.from_pretrained(str(converted_dir()))
    return AutoTokenizer.from_pretrained(model.name)


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def encode_chat(tokenizer: Any, messages: Sequence[tuple[str, str]]) -> list[int]:
    """The tokenizer's chat template when it has one, else `role: text` lines and `assistant:`."""
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template([{"role": r, "content": c} for r, c in messages],
                                                 add_generation_prompt=True, tokenize=False)
        return encode_prompt(tokenizer, str(rendered))
    text = "".join(f"{role}: {content}\n" for role, content in messages) + "assistant:"
    return encode_prompt(tokenizer, text)


class TextStream:
    def __init__(self, tokenizer: Any, stop: Sequence[str] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = tuple(stop)
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self._tokens: list[int] = []
        self._text = ""
        self._emitted = 0
        self.stopped = False

    @property
    def num_tokens(self) -> int:
        return len(self._tokens)

    def push(self, token_ids: Sequence[int]) -> str:
        if self.stopped:
            return ""
        self._tokens.extend(token_ids)
        self._text = self._tokenizer.decode(self._tokens, skip_special_tokens=True)
        for stop in self._stop:
            cut = self._text.find(stop)
            if cut >= 0:
                self._text = self._text[:cut]
                self.stopped = True
        if self.stopped:
            return self._take(len(self._text))
        safe = len(self._text.rstrip("\ufffd")) - self._hold
        return self._take(max(safe, self._emitted))

    def finish(self) -> str:
        return self._take(len(self._text))

    def _take(self, end: int) -> str:
        delta = self._text[self._emitted:end]
        self._emitted = max(self._emitted, end)
        return delta

    @property
    def text(self) -> str:
        return self._text
