"""The Grafana dashboard in deploy/grafana is built on the gateway's real metric and label names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prfaas.serve.metrics import GatewayMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "prfaas-dashboard.json"
_METRIC_RE = re.compile(r"\bprfaas_[a-z_]+\b")
_BY_RE = re.compile(r"\bby \(([^)]*)\)")
_LEGEND_RE = re.compile(r"\{\{(\w+)\}\}")
_SUFFIXES = ("_bucket", "_sum", "_count")


def _exported() -> set[str]:
    """Every sample name the gateway exports (a labelled counter's `<name>_total` before its first child too)."""
    names: set[str] = set()
    for family in GatewayMetrics().registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def _metric_labels(collector_name: str) -> set[str]:
    """The label names of the gateway metric that exports `collector_name`."""
    metrics = GatewayMetrics()
    for value in vars(metrics).values():
        for parent in (value, *(value.values() if isinstance(value, dict) else ())):
            name = getattr(parent, "_name", None)
            if name is not None and collector_name.startswith(name):
                return set(getattr(parent, "_labelnames", ()))
    return set()


def _targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for panel in dashboard["panels"] for t in panel["targets"]]


def test_the_dashboard_is_a_grafana_dashboard_with_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(t["expr"] and t["refId"] for t in _targets(dashboard))


def test_every_metric_and_label_in_the_dashboard_is_exported_by_the_gateway() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exported = _exported()
    used: set[str] = set()
    for target in _targets(dashboard):
        metrics = set(_METRIC_RE.findall(target["expr"]))
        assert metrics, target["expr"]
        for name in metrics:
            base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), name)
            assert name in exported or base in exported, f"{name} is not exported by the gateway"
            used.add(base)
        labels = {label.strip() for group in _BY_RE.findall(target["expr"]) for label in group.split(",")}
        labels |= set(_LEGEND_RE.findall(target["legendFormat"]))
        known = {"le"} | set().union(*(_metric_labels(m) for m in metrics))
        assert labels <= known, f"{target['expr']}: labels {labels - known} are not on {metrics}"
    # the panels cover what an operator of two sites looks at first
    for name in ("prfaas_ttft_seconds", "prfaas_requests_by_reason_total", "prfaas_threshold_tokens",
                 "prfaas_link_goodput_gbps", "prfaas_link_utilisation", "prfaas_node_queue_requests",
                 "prfaas_admission_refused_total"):
        assert name in used or name.removesuffix("_total") in used, name
