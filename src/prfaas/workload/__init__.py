"""prfaas.workload (see docs/structure.md): length distributions, arrival processes, trace readers (Mooncake
JSONL, Azure CSV), prefix-cache hit modelling and synthetic workload generation. Pure: numpy only.

Modules: `request` (WorkloadRequest), `distribution`, `lognormal`, `empirical`, `traces`, `stats`, `prefix`,
`arrivals`, `mixshift`, `sessions`, `generate`. The most used names are re-exported here.
"""

from prfaas.workload.arrivals import (
    ArrivalProcess,
    BurstSchedule,
    DiurnalRamp,
    LinearRamp,
    PoissonArrivals,
    StepSchedule,
    TraceArrivals,
)
from prfaas.workload.distribution import DiscreteLengthDistribution
from prfaas.workload.empirical import lengths_from_trace, output_lengths_from_trace
from prfaas.workload.generate import rescale_arrivals, scale_distribution, scale_lengths, synthetic_requests
from prfaas.workload.lognormal import truncated_lognormal
from prfaas.workload.mixshift import MixShift, short_long_split, short_to_long_shift
from prfaas.workload.prefix import (
    BLOCK_TOKENS,
    LruBlockCache,
    PrefixReplay,
    replay_prefix_cache,
    uncached_after_hit_rate,
)
from prfaas.workload.request import WorkloadRequest
from prfaas.workload.sessions import SyntheticPrefixes
from prfaas.workload.stats import WorkloadSummary, summarize_requests
from prfaas.workload.traces import load_trace, read_azure_csv, read_mooncake_jsonl

__all__ = [
    "BLOCK_TOKENS",
    "ArrivalProcess",
    "BurstSchedule",
    "DiscreteLengthDistribution",
    "DiurnalRamp",
    "LinearRamp",
    "LruBlockCache",
    "MixShift",
    "PoissonArrivals",
    "PrefixReplay",
    "StepSchedule",
    "SyntheticPrefixes",
    "TraceArrivals",
    "WorkloadRequest",
    "WorkloadSummary",
    "lengths_from_trace",
    "load_trace",
    "output_lengths_from_trace",
    "read_azure_csv",
    "read_mooncake_jsonl",
    "replay_prefix_cache",
    "rescale_arrivals",
    "scale_distribution",
    "scale_lengths",
    "short_long_split",
    "short_to_long_shift",
    "summarize_requests",
    "synthetic_requests",
    "truncated_lognormal",
    "uncached_after_hit_rate",
]
