"""The simulator on exactly the live workload: same requests (arrivals, scaled lengths, prefix chains), same
policy, threshold, node counts, link cap and measured costs.

    prediction = simulate_live(profile_path, profile, setup, workload_requests(spec))

`serve.predict.simulate_same` draws its own requests from the log-normal; with the few dozen requests a live
run can afford, two draws differ by more than the error we want to measure, so the benchmark hands the
simulator the very requests it sent. The config mirrors `simulate_same` (one source of costs: the profile).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import msgspec

from prfaas.perf.measured import MeasuredProfile
from prfaas.serve.predict import LiveSetup, Prediction, decode_step_s
from prfaas.workload import WorkloadRequest

SIM_LINK_LATENCY_S = 0.0001  # veth RTT is ~0.1 ms; the emulated delay, if any, is not modelled here


def _sim_config(profile_path: Path, profile: MeasuredProfile, setup: LiveSetup) -> dict[str, object]:
    return {
        "seed": setup.seed, "duration_s": setup.duration_s, "tpot_slo_s": 10.0,
        "model": {"profile": str(profile_path), "t_decode_s": decode_step_s(profile), "bs_max": setup.max_batch},
        "cluster": {"n_prfaas": setup.n_prfaas, "n_pd_prefill": setup.n_pd_prefill,
                    "n_pd_decode": setup.n_pd_decode},
        "link": {"capacity_gbps": setup.link_gbps, "latency_s": SIM_LINK_LATENCY_S},
        "workload": {"kind": "lognormal", "mu": setup.mu, "sigma": setup.sigma, "min_tokens": setup.min_tokens,
                     "max_tokens": setup.max_tokens, "output_tokens": setup.output_tokens,
                     "arrivals": {"kind": "poisson", "rate_rps": setup.rate_rps}},
        "policy": {"name": setup.policy, "threshold_tokens": setup.threshold_tokens},
    }


def simulate_live(profile_path: Path, profile: MeasuredProfile, setup: LiveSetup,
                  requests: Sequence[WorkloadRequest]) -> Prediction:
    from prfaas.sim.build import build_inputs
    from prfaas.sim.config import SimConfig
    from prfaas.sim.run import simulate

    cfg = msgspec.convert(_sim_config(profile_path, profile, setup), SimConfig)
    inputs = dataclasses.replace(build_inputs(cfg), requests=tuple(requests))
    run = simulate(inputs.deployment, setup.policy, inputs.requests, policy_config=inputs.policy_config,
                   options=inputs.options)
    s = run.summary
    return Prediction("simulator", s.ttft_mean_s, s.ttft_p90_s, s.offload_fraction, s.egress_bytes,
                      s.throughput_rps, setup.threshold_tokens)
