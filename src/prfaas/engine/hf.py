"""The one place the engine imports transformers: offline mode first, then the library.

`HF_HUB_OFFLINE=1` is set (unless the deployment already set it) before transformers is imported, so nothing
downloads models, tokenizers or kernels at run time. `set_num_threads` is the knob processes sharing cores use.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers
from transformers import DynamicCache
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()  # the "falling back to the reference PyTorch implementation" notices
hf_logging.disable_progress_bar()

__all__ = ["DynamicCache", "set_num_threads", "transformers"]


def set_num_threads(num_threads: int | None) -> None:
    """Set torch's intra-op threads (None leaves torch's default). Processes sharing 2 cores use 1 each."""
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError("num_threads must be >= 1")
        torch.set_num_threads(num_threads)
