"""Tokenizers: the shipped byte-level BPE of the embedded default model, and Hugging Face tokenizers by path.

The default tokenizer is `data/default_tokenizer.json`, a 2,048-token byte-level BPE trained once with
`python -m prfaas.engine.tokenizer` from the docstrings of Python's standard library (no network, deterministic
input). Ids 0, 1, 2 are `<|pad|>`, `<|bos|>`, `<|eos|>`. Loading it needs no network and takes milliseconds.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

DEFAULT_TOKENIZER_PATH = Path(__file__).parent / "data" / "default_tokenizer.json"
DEFAULT_VOCAB_SIZE = 2048
SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>")
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2

_CORPUS_MODULES = ("string", "textwrap", "json", "collections", "functools", "itertools", "pathlib", "argparse",
                   "logging", "typing", "dataclasses", "enum", "re", "email", "http", "unittest", "asyncio",
                   "statistics", "fractions", "decimal", "random", "datetime", "calendar", "heapq", "bisect")


def corpus_lines() -> list[str]:
    """Training text: docstrings of a fixed list of standard-library modules and their members."""
    lines: list[str] = []
    for name in _CORPUS_MODULES:
        module = importlib.import_module(name)
        members = [module, *(getattr(module, attr) for attr in sorted(dir(module)) if not attr.startswith("_"))]
        for obj in members:
            doc = getattr(obj, "__doc__", None)
            if isinstance(doc, str):
                lines.extend(line.strip() for line in doc.splitlines() if line.strip())
        if hasattr(module, "__path__"):
            for info in pkgutil.iter_modules(module.__path__):
                lines.append(info.name.replace("_", " "))
    return lines


def train_tokenizer(lines: list[str], vocab_size: int = DEFAULT_VOCAB_SIZE) -> Tokenizer:
    """A byte-level BPE trained on `lines`, with the special tokens at ids 0, 1, 2."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer=trainer)
    return tokenizer


def load_default_tokenizer() -> Any:
    """The shipped tokenizer wrapped as a `transformers.PreTrainedTokenizerFast`."""
    from prfaas.engine.hf import transformers

    return transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(DEFAULT_TOKENIZER_PATH),
        pad_token=SPECIAL_TOKENS[PAD_ID],
        bos_token=SPECIAL_TOKENS[BOS_ID],
        eos_token=SPECIAL_TOKENS[EOS_ID],
    )


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else DEFAULT_TOKENIZER_PATH
    train_tokenizer(corpus_lines()).save(str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
