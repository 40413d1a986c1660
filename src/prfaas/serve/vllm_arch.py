"""The architecture a vLLM node serves, for S_kv(l) (pure: reads one file, imports nothing of vLLM).

    arch = served_arch("qwen3-next-80b-a3b")        # a catalog model by name, or a catalog TOML path
    arch = served_arch("/models/tiny-qwen3-next")   # a checkpoint folder: its config.json
                                                    # (`integrations.vllm.catalog_arch`, bf16 state)
"""

from __future__ import annotations

import json
from pathlib import Path

from prfaas.catalog.model import ModelArch
from prfaas.catalog.models import load_model
from prfaas.core.errors import PrfaasError


class ArchError(PrfaasError):
    """`state_bytes_model` names no architecture we can read."""


def served_arch(ref: str) -> ModelArch:
    folder = Path(ref)
    if folder.is_dir():
        from prfaas.integrations.vllm.catalog_arch import arch_from_config

        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            return arch_from_config(config)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArchError(f"{folder}/config.json: {exc}") from None
    try:
        return load_model(ref)
    except (PrfaasError, OSError, ValueError) as exc:
        raise ArchError(f"not a catalog model or checkpoint folder: {exc}") from None
