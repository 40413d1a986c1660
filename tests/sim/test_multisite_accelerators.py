"""Per-cluster accelerators in the multi-site simulator: each cluster's prefill model is the planner's derivation
for its `accelerator` (`planner.multi_build.AcceleratorPrefillModels`). Clusters naming the defaults give the
records the simulator gave before accelerators were used; a PrfaaS cluster on a faster GPU prefills faster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from multisite_kit import SCENARIOS

from prfaas.core.errors import UnknownNameError
from prfaas.sim.build import cost_models
from prfaas.sim.config import SimConfig, load_config
from prfaas.sim.multisite_build import build_multisite_inputs
from prfaas.sim.multisite_deployment import MultiSiteDeployment, MultiSiteRecord
from prfaas.sim.multisite_run import simulate_multisite

ONE_BY_ONE = """
seed = 4
duration_s = 60.0

[workload]
output_tokens = 64

[[topology.prfaas]]
name = "prfaas"
accelerator = "{prfaas_gpu}"
instances = 2

[[topology.pd]]
name = "pd"
accelerator = "h20"
instances = 6
prefill_instances = 2
traffic_rps = 1.0

[[topology.links]]
prfaas = "prfaas"
pd = "pd"
capacity_gbps = 100
latency_s = 0.005
"""


def _config(tmp_path: Path, prfaas_gpu: str) -> SimConfig:
    path = tmp_path / f"one_by_one_{prfaas_gpu}.toml"
    path.write_text(ONE_BY_ONE.format(prfaas_gpu=prfaas_gpu))
    return load_config(path)


def _run(cfg: SimConfig, deployment: MultiSiteDeployment | None = None) -> tuple[MultiSiteRecord, ...]:
    inp = build_multisite_inputs(cfg)
    kwargs: dict[str, Any] = {"selector": inp.selector, "selector_config": inp.selector_config,
                              "policy_config": inp.policy_config, "script": inp.script, "options": inp.options,
                              "prefill_queue": cfg.sites.prefill_queue}
    return simulate_multisite(deployment or inp.deployment, cfg.policy.name, inp.requests, inp.region_of,
                              **kwargs).records


def _legacy_deployment(cfg: SimConfig) -> MultiSiteDeployment:
    """What the simulator built before it read `accelerator`: the config's PrfaaS model for every PrfaaS cluster,
    its PD model for every PD cluster (`sim.build.cost_models`)."""
    assert cfg.topology is not None
    models = cost_models(cfg)
    c = cfg.cluster
    return MultiSiteDeployment(cfg.topology, models.prfaas_prefill, models.pd_prefill, models.decode,
                               bs_max=cfg.model.bs_max, cache_blocks=c.cache_blocks,
                               intra_cluster_gbps=c.intra_cluster_gbps, window_s=cfg.link.window_s,
                               buffer_s=cfg.link.buffer_s)


def test_default_accelerators_give_the_same_records_as_before(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "h200")
    new, old = _run(cfg), _run(cfg, _legacy_deployment(cfg))
    assert len(new) == len(old) > 40 and sum(r.is_offloaded for r in new) > 10
    assert new == old


def test_default_accelerators_two_by_two_gives_the_same_records_as_before() -> None:
    cfg = msgspec.structs.replace(load_config(SCENARIOS / "multisite_link_degraded.toml"), duration_s=50.0)
    new, old = _run(cfg), _run(cfg, _legacy_deployment(cfg))
    assert len(new) == len(old) > 150 and {r.prfaas_site for r in new} == {"", "A", "B"}
    assert new == old


def _offloaded(records: tuple[MultiSiteRecord, ...]) -> list[MultiSiteRecord]:
    return [r for r in records if r.is_offloaded and r.ttft_s is not None and r.prefill_s is not None]


def test_prfaas_cluster_on_a_faster_accelerator_prefills_faster(tmp_path: Path) -> None:
    h200, b200 = _run(_config(tmp_path, "h200")), _run(_config(tmp_path, "b200"))
    assert [r.input_tokens for r in h200] == [r.input_tokens for r in b200]  # same seed, same requests
    slow, fast = _offloaded(h200), _offloaded(b200)
    assert len(slow) > 10 and len(fast) > 10
    by_id = {r.request_id: r for r in slow}
    both = [(by_id[r.request_id], r) for r in fast if r.request_id in by_id and r.cached_tokens == 0]
    assert len(both) > 10
    # B200's peak BF16 is 2.27x H200's (catalog); equal MFU assumed: compute time shrinks by that ratio
    assert all(f.prefill_s < s.prefill_s for s, f in both)
    assert sum(f.prefill_s for _, f in both) < 0.6 * sum(s.prefill_s for s, _ in both)
    assert sum(r.ttft_s for r in fast) / len(fast) < sum(r.ttft_s for r in slow) / len(slow)


def test_unknown_accelerator_names_it(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match=r"accelerator .tpu-x.*known: .*b200"):
        build_multisite_inputs(_config(tmp_path, "tpu-x"))
