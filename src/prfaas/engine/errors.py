"""Typed errors of the model engine.

Every error the engine raises on purpose for bad input is an `EngineError` (a `PrfaasError`), so a worker
that catches `EngineError` around one request keeps serving the others. Messages are one line.
"""

from __future__ import annotations

from prfaas.core.errors import PrfaasError


class EngineError(PrfaasError):
    """Base of the engine's input and state errors."""


class EmptyPromptError(EngineError):
    """A prefill was asked for zero tokens."""

    def __init__(self) -> None:
        super().__init__("empty prompt: a prefill needs at least one token")


class PromptTooLongError(EngineError):
    """The prompt (plus any cached prefix) does not fit the model's context."""

    def __init__(self, num_tokens: int, max_tokens: int) -> None:
        super().__init__(f"prompt of {num_tokens} tokens exceeds the model's context of {max_tokens} tokens")
        self.num_tokens = num_tokens
        self.max_tokens = max_tokens


class InvalidTokenError(EngineError):
    """A token id is outside the model's vocabulary."""

    def __init__(self, token_id: int, vocab_size: int, position: int) -> None:
        super().__init__(f"token id {token_id} at position {position} is outside the vocabulary [0, {vocab_size})")
        self.token_id = token_id
        self.vocab_size = vocab_size
        self.position = position


class StateLayoutMismatchError(EngineError):
    """A received or cached state does not have the layout this model expects."""


class UnsupportedModelError(EngineError):
    """A checkpoint's architecture is not one of the supported hybrid families."""


class DuplicateRequestError(EngineError):
    """A request id is already running in a decode worker."""


class UnknownRequestError(EngineError):
    """A request id is not known to a decode worker or a pool."""


class BatchFullError(EngineError):
    """A decode worker already runs its maximum batch."""


class PoolExhaustedError(EngineError):
    """The prefix cache pool cannot hold a new allocation even after evicting every free prefix block."""


class InvalidSamplingError(EngineError):
    """Sampling parameters are out of range."""
