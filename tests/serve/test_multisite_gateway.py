"""Many sites in the live system (issue 14): the [topology] serve config, one gateway per PD region, and a region
gateway that spreads offloads over two PrfaaS sites with `policy.sites` and fails over when one is killed.

Loopback only, stub model (no torch). Config checks and projections need no process.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import get_json, post, ready_deployment

from prfaas.core.errors import ConfigError
from prfaas.serve.config import load_config
from prfaas.serve.launcher import Launcher
from prfaas.serve.sites import node_gateways, region_config

BASE = """
[model]
name = "stub"

[gateway]
port = 0
heartbeat_interval_s = 0.2
heartbeat_timeout_s = 1.5
route_wait_s = 30.0
{region}

[policy]
threshold_tokens = 256
rebalance = false
[policy.bandwidth]  # the links' loops never raise the threshold on queue here: these tests are about where
queue_low_per_instance = 32.0  # an offload goes (a slow host's queue of 8 would otherwise shed it locally)
queue_high_per_instance = 64.0

[[topology.prfaas]]
name = "pa"
[[topology.prfaas]]
name = "pb"
[[topology.pd]]
name = "ra"
instances = 2
prefill_instances = 1
{extra_pd}
[[topology.links]]
prfaas = "pa"
pd = "ra"
capacity_gbps = 10
[[topology.links]]
prfaas = "pb"
pd = "ra"
capacity_gbps = 10
{extra_links}
[[nodes]]
name = "pa-0"
cluster = "prfaas"
role = "prfaas_prefill"
site = "pa"
[[nodes]]
name = "pb-0"
cluster = "prfaas"
role = "prfaas_prefill"
site = "pb"
[[nodes]]
name = "ra-p"
cluster = "pd"
role = "pd_prefill"
site = "ra"
[[nodes]]
name = "ra-d"
cluster = "pd"
role = "pd_decode"
site = "ra"
{extra_nodes}
"""
ONE_REGION = BASE.format(region='region = "ra"', extra_pd="", extra_links="", extra_nodes="")
TWO_REGIONS = BASE.format(region="", extra_pd='[[topology.pd]]\nname = "rb"\ninstances = 2\n',
                          extra_links='[[topology.links]]\nprfaas = "pb"\npd = "rb"\n',
                          extra_nodes='[[nodes]]\nname = "rb-d"\ncluster = "pd"\nrole = "pd_decode"\nsite = "rb"\n'
                                      '[[gateways]]\nregion = "ra"\nport = 8101\n'
                                      '[[gateways]]\nregion = "rb"\nport = 8102\n')


def _load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "deploy.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def test_today_config_has_no_sites(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "[policy]\nrebalance = false\n")
    assert cfg.topology is None and cfg.gateways == [] and all(n.site is None for n in cfg.nodes)
    assert node_gateways(cfg, "prfaas-0") == [(cfg.gateway.host, cfg.gateway.port)]


def test_one_gateway_per_region_projection(tmp_path: Path) -> None:
    cfg = _load(tmp_path, TWO_REGIONS)
    assert [g.region for g in cfg.gateways] == ["ra", "rb"]
    ra, rb = region_config(cfg, "ra"), region_config(cfg, "rb")
    assert ra.gateway.region == "ra" and ra.gateway.port == 8101 and ra.gateways == []
    assert {n.name for n in ra.nodes} == {"pa-0", "pb-0", "ra-p", "ra-d"}
    assert {n.name for n in rb.nodes} == {"pb-0", "rb-d"}  # pa has no link to rb
    assert node_gateways(cfg, "pb-0") == [("127.0.0.1", 8101), ("127.0.0.1", 8102)]  # every region it serves
    assert node_gateways(cfg, "pa-0") == [("127.0.0.1", 8101)]
    assert node_gateways(cfg, "rb-d") == [("127.0.0.1", 8102)]


@pytest.mark.parametrize(("edit", "key"), [
    (lambda t: t.replace('site = "pa"', 'site = "nowhere"'), "nodes[0].site"),
    (lambda t: t.replace('site = "ra"\n[[nodes]]\nname = "ra-d"', 'site = "pa"\n[[nodes]]\nname = "ra-d"'),
     "nodes[2].site"),
    (lambda t: t.replace('site = "pa"\n', ''), "nodes[0].site"),
    (lambda t: t.replace('region = "ra"', 'region = "mars"'), "gateway.region"),
    (lambda t: t.replace('region = "ra"', ''), "gateway.region"),
    (lambda t: t.replace('pd = "ra"\ncapacity_gbps = 10\n[[topology.links]]', 'pd = "x"\n[[topology.links]]'),
     "topology.links[0].pd"),
])
def test_bad_site_config_names_the_key(tmp_path: Path, edit: Any, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        _load(tmp_path, edit(ONE_REGION))


def test_site_without_topology_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a \\[topology\\]"):
        _load(tmp_path, '[[nodes]]\nname = "p"\ncluster = "prfaas"\nrole = "prfaas_prefill"\nsite = "x"\n'
                        '[[nodes]]\nname = "d"\ncluster = "pd"\nrole = "pd_decode"\n')


# --- live: one region gateway, two PrfaaS sites ----------------------------------------------------
@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    with ready_deployment(tmp_path_factory.mktemp("multisite"), ONE_REGION) as launcher:
        yield launcher


def _burst(url: str, n: int, first: int, tokens: int = 400) -> list[tuple[int, dict[str, Any]]]:
    """`n` concurrent completions of distinct `tokens`-token prompts (offloaded: above the 256 threshold)."""
    out: list[tuple[int, dict[str, Any]]] = [(0, {})] * n

    def one(i: int) -> None:
        prompt = [(first + i) % 200 + 1] + [((first + i) * 7 + k) % 1000 + 1 for k in range(tokens - 1)]
        out[i] = post(f"{url}/v1/completions", {"model": "default", "prompt": prompt, "max_tokens": 4,
                                                "temperature": 0}, timeout_s=60)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    return out


def _rows(dep: Launcher, since: int) -> list[dict[str, Any]]:
    req = urllib.request.Request(f"{dep.url}/admin/requests?since={since}", headers=dep.admin_headers())
    with urllib.request.urlopen(req, timeout=10) as resp:
        return list(json.loads(resp.read()))


@pytest.mark.network
@pytest.mark.slow
def test_offloads_spread_over_sites_then_fail_over_when_one_is_killed(dep: Launcher) -> None:
    results = _burst(dep.url, 12, first=0)
    assert all(status == 200 for status, _ in results), results
    rows = _rows(dep, 0)
    assert len(rows) == 12 and all(r["route"] == "prfaas" for r in rows)
    spread = Counter(r["prefill_node"] for r in rows)
    assert spread["pa-0"] > 0 and spread["pb-0"] > 0, spread  # the selector used both sites
    cluster = get_json(f"{dep.url}/admin/cluster", dep.admin_headers())
    assert cluster["sites"]["region"] == "ra" and sum(cluster["sites"]["offloads_by_site"].values()) == 12

    last = max(int(r["id"]) for r in rows)
    dep.kill("pa-0")  # the gateway still believes pa is up (no heartbeat timeout yet): the first try there fails
    results = _burst(dep.url, 8, first=100)
    assert all(status == 200 for status, _ in results), results  # nothing lost
    after = [r for r in _rows(dep, last) if int(r["id"]) > last]
    assert len(after) == 8
    assert all(r["route"] == "prfaas" and r["prefill_node"] == "pb-0" for r in after), after  # failover, not local

    dep.kill("pb-0")  # no PrfaaS site left: local prefill
    last = max(int(r["id"]) for r in after)
    results = _burst(dep.url, 4, first=200)
    assert all(status == 200 for status, _ in results), results
    final = [r for r in _rows(dep, last) if int(r["id"]) > last]
    assert len(final) == 4 and all(r["route"] == "local" for r in final), final


@pytest.mark.network
def test_admin_sets_a_link_capacity_and_refuses_an_unknown_link(dep: Launcher) -> None:
    status, body = post(f"{dep.url}/admin/sites/links", {"link_id": "pb->ra", "capacity_gbps": 1.0},
                        dep.admin_headers())
    assert status == 200 and body["link_capacity_gbps"] == {"pb->ra": 1.0}
    status, body = post(f"{dep.url}/admin/sites/links", {"link_id": "pb->elsewhere", "capacity_gbps": 1.0},
                        dep.admin_headers())
    assert status == 400 and "no link" in body["error"]["message"]
    status, _ = post(f"{dep.url}/admin/sites/links", {"link_id": "pb->ra", "capacity_gbps": 1.0})
    assert status in (401, 403)  # admin token required


def test_link_capacity_told_to_the_gateway_steers_long_offloads(tmp_path: Path) -> None:
    """A link degraded 10x (told through `set_link_capacity`) raises its transfer estimate: the offload moves to the
    other site, and back once the capacity is restored. The site routing over a registry, no process."""
    from prfaas.core.lifecycle import ClusterKind, Role
    from prfaas.policy.types import RequestInfo
    from prfaas.serve.control import ControlPlane
    from prfaas.serve.messages import Heartbeat, NodeRegister
    from prfaas.serve.metrics import GatewayMetrics

    cfg = _load(tmp_path, ONE_REGION.replace('pd = "ra"\ncapacity_gbps = 10\n', 'pd = "ra"\ncapacity_gbps = 10\n'
                                             'latency_s = 0.001\n', 1))
    control = ControlPlane(cfg, GatewayMetrics())
    routing = control.sites
    assert routing is not None and routing.sites == ("pa", "pb")
    for name, cluster, role in (("pa-0", ClusterKind.PRFAAS, Role.PRFAAS_PREFILL),
                                ("pb-0", ClusterKind.PRFAAS, Role.PRFAAS_PREFILL),
                                ("ra-p", ClusterKind.PD, Role.PD_PREFILL), ("ra-d", ClusterKind.PD, Role.PD_DECODE)):
        control.register(NodeRegister(name=name, cluster=cluster, role=role, control_url="http://127.0.0.1:1",
                                      kv_host="127.0.0.1", kv_port=2, max_batch=8, pid=1, max_context_tokens=10**6,
                                      state_bytes_points=[(0.0, 0.0), (1000.0, 1e9)]))  # 1 MB per token
        control.nodes.heartbeat(Heartbeat(name=name, role=role), 0.0)

    def site_for(tokens: int, request_id: int) -> str | None:
        return routing.choose(RequestInfo(request_id=request_id, arrival_s=0.0, input_tokens=tokens,
                                          output_tokens=4), 256, 0.0).site

    assert site_for(2000, 1) == "pa"  # home: the lower-latency link
    routing.set_link_capacity("pa->ra", 1.0)  # 10x down
    assert site_for(2000, 2) == "pb"  # 2 GB at 1 Gbps vs 10 Gbps: the other site
    assert routing.reason_of(2) == "best" and routing.reason_of(2) is None  # recorded per request, read once
    routing.set_link_capacity("pa->ra", 10.0)  # restored
    assert site_for(2000, 3) == "pa"
    with pytest.raises(ConfigError, match="no link"):
        routing.set_link_capacity("pb->nowhere", 1.0)
