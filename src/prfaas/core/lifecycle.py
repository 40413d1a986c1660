"""Closed sets shared across packages: roles, cluster kinds, request lifecycle."""

from __future__ import annotations

import enum


class ClusterKind(enum.Enum):
    """The two kinds of cluster in a PrfaaS-PD deployment."""

    PRFAAS = "prfaas"  # compute-dense, prefill only, KV producer
    PD = "pd"  # local prefill/decode cluster


class Role(enum.Enum):
    """What an instance does now. PD nodes switch between PD_P and PD_D at run time."""

    PRFAAS_PREFILL = "prfaas_prefill"
    PD_PREFILL = "pd_prefill"
    PD_DECODE = "pd_decode"
    DRAINING = "draining"


class RequestState(enum.Enum):
    """Request lifecycle; FINISHED_* are terminal."""

    QUEUED = "queued"
    PREFILLING = "prefilling"
    KV_IN_FLIGHT = "kv_in_flight"
    DECODE_QUEUED = "decode_queued"
    DECODING = "decoding"
    FINISHED_OK = "finished_ok"
    FINISHED_ERROR = "finished_error"
    FINISHED_ABORTED = "finished_aborted"

    @property
    def is_terminal(self) -> bool:
        return self.name.startswith("FINISHED_")
