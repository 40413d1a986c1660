"""Config-only model checks: can the engine serve this model name or checkpoint folder? No torch, no weights.

    check_model("default")              # a named model: fine
    check_model("/ckpt/tiny-jamba")     # UnknownNameError: unknown model type 'jamba'; known: bamba, ...
    checkpoint_model_type(Path(...))    # the decoder's `model_type` from config.json ('qwen3_5_text', ...)

The launcher calls `check_model` once before any node starts, so a checkpoint of an unsupported family fails with
the same one-line error `load_model` (and `prfaas profile`) gives, instead of a traceback in every node log. It reads
only config.json: the decoder's `model_type` is the top-level one, or that of the nested text section of a
multimodal config (the keys transformers' `get_text_config` looks under).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prfaas.core.errors import UnknownNameError
from prfaas.engine.errors import UnsupportedModelError
from prfaas.engine.families import family_for_model_type

NAMED_MODELS = ("default", "smollm2")
_TEXT_SECTION_KEYS = ("text_encoder", "decoder", "generator", "text_config")


def _read_config_json(path: Path) -> dict[str, Any]:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UnsupportedModelError(f"{path} has no config.json; expected a Hugging Face checkpoint folder")
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnsupportedModelError(f"{config_file}: cannot read it as JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UnsupportedModelError(f"{config_file}: expected a JSON object")
    return data


def checkpoint_model_type(path: Path) -> str:
    """The decoder's `model_type` of the checkpoint folder `path` (read from its config.json only)."""
    data = _read_config_json(path)
    sections = [data[key] for key in _TEXT_SECTION_KEYS if isinstance(data.get(key), dict)]
    text = sections[0] if len(sections) == 1 else data
    model_type = text.get("model_type", data.get("model_type"))
    if not isinstance(model_type, str) or not model_type:
        raise UnsupportedModelError(f"{path / 'config.json'} has no model_type")
    return model_type


def check_model(name_or_path: str) -> None:
    """Raise the engine's one-line error if `name_or_path` is neither a named model nor a checkpoint folder of a
    supported family."""
    if name_or_path in NAMED_MODELS:
        return
    path = Path(name_or_path)
    if not path.is_dir():
        raise UnknownNameError("model", name_or_path, [*NAMED_MODELS, "<path to a checkpoint folder>"])
    family_for_model_type(checkpoint_model_type(path))
