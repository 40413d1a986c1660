"""Build a `MultiCase` from a topology file (or a topology value) and the two-cluster planner's inputs.

A topology file holds a `[topology]` section (`core.topology`) and, optionally, a `[plan]` table of
`PlanInputs` fields (model, lengths, SLO, ...), shared by every cluster. Each cluster's prefill model is the
two-cluster planner's model carried to that cluster's accelerator (`planner.build`: the PrfaaS source profile
as is on its own GPU, the paper's H200 -> H20 calibration, or the peak-FLOPS ratio otherwise), so a 1x1
topology plans exactly like `prfaas plan`.
"""

from __future__ import annotations

import dataclasses

from prfaas.catalog.tomlfile import TomlDoc, convert, read_toml
from prfaas.core.errors import ConfigError
from prfaas.core.topology import SiteTopology, TopologyError, check_topology
from prfaas.perf.base import PrefillCostModel
from prfaas.planner.build import PlanInputs, build_case
from prfaas.planner.multi_case import MultiCase
from prfaas.planner.paper import PaperCase
from prfaas.planner.report import Assumption


def load_topology(path: str) -> tuple[SiteTopology, PlanInputs | None]:
    """Read `[topology]` (required) and `[plan]` (optional) from TOML; errors name the file, key and line."""
    doc = read_toml(path)
    return topology_from_doc(doc), _plan_inputs(doc)


def topology_from_doc(doc: TomlDoc) -> SiteTopology:
    table = doc.data.get("topology")
    if not isinstance(table, dict):
        raise doc.error("", "expected a [topology] table with [[topology.prfaas]], [[topology.pd]] and "
                            "[[topology.links]]")
    topo = convert(table, SiteTopology, doc, prefix="topology")
    try:
        return check_topology(topo)
    except TopologyError as exc:
        raise doc.error(exc.key, exc.reason) from None


def _plan_inputs(doc: TomlDoc) -> PlanInputs | None:
    table = doc.data.get("plan")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise doc.error("plan", "expected a table")
    known = {f.name for f in dataclasses.fields(PlanInputs)}
    for key in table:
        if key not in known:
            raise doc.error(f"plan.{key}", f"unknown key; known: {', '.join(sorted(known))}")
    return convert(table, PlanInputs, doc, prefix="plan")


class AcceleratorPrefillModels:
    """The two-cluster planner's prefill model carried to any accelerator (module docstring), built once per name.

    `model_for("h200")` with the default inputs is the paper's Table 5 model; `model_for("h20")` the paper's
    calibrated H20 model. The multi-site planner and the multi-site simulator both derive each cluster's
    prefill model here (one code path). Unknown accelerator names raise `ConfigError` naming them."""

    def __init__(self, inputs: PlanInputs | None = None, base: PaperCase | None = None) -> None:
        self.inputs = inputs or PlanInputs()
        self.base = base if base is not None else build_case(self.inputs)
        self.source_gpu = (self.inputs.prfaas_gpu or "h200").lower()
        self.cache: dict[str, PrefillCostModel] = {}

    def model_for(self, gpu: str) -> PrefillCostModel:
        key = gpu.lower()
        if key not in self.cache:
            if key == self.source_gpu:
                model = self.base.prfaas_pd.prfaas_prefill
            else:
                try:
                    model = build_case(dataclasses.replace(self.inputs, pd_gpu=key)).prfaas_pd.pd_prefill
                except ConfigError as exc:
                    raise ConfigError(f"accelerator {gpu!r}: {exc}") from None
            assert model is not None
            self.cache[key] = model
        return self.cache[key]

    def describe(self) -> str:
        return ", ".join(f"{g}: {m.name}" for g, m in sorted(self.cache.items()))


def build_multi_case(topology: SiteTopology, inputs: PlanInputs | None = None, name: str = "topology") -> MultiCase:
    """Per-cluster prefill models and the shared traffic shape (see module docstring)."""
    inputs = inputs or PlanInputs()
    base = build_case(inputs)
    models = AcceleratorPrefillModels(inputs, base)
    prfaas_models = tuple(models.model_for(s.accelerator) for s in topology.prfaas)
    pd_models = tuple(models.model_for(s.accelerator) for s in topology.pd)
    s = base.prfaas_pd
    two_cluster_only = {"egress_gbps", "instances", "instances_used"}  # the topology states these instead
    notes = [a for a in base.assumptions if a.name not in two_cluster_only]
    notes.append(Assumption("per_cluster_prefill_models", models.describe(),
                            f"the {models.source_gpu} prefill model carried to each accelerator (planner.build)"))
    notes.append(Assumption("decode", f"bs_max {s.bs_max}, t_decode {s.t_decode_s * 1000:.1f} ms in every PD cluster",
                            "the two-cluster planner's decode inputs"))
    weights = topology.traffic_weights()
    notes.append(Assumption("traffic_mix", ", ".join(f"{p.name} {w:g}" for p, w in zip(topology.pd, weights,
                                                                                        strict=True)),
                            "traffic_rps" if topology.has_traffic else "no traffic_rps: weight = PD instances"))
    return MultiCase(name=name, topology=topology, prfaas_models=prfaas_models, pd_models=pd_models,
                     lengths=s.lengths, output_tokens=s.output_tokens, bs_max=s.bs_max, t_decode_s=s.t_decode_s,
                     prefix_hits=s.prefix_hits, assumptions=tuple(notes))
