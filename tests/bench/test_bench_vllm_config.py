"""`bench.vllm_nodes.vllm_config`: a placed deployment's nodes become adapters of their own vLLM servers."""

from __future__ import annotations

from pathlib import Path

from prfaas.bench.deploy import place_on_sites
from prfaas.bench.regime import tiny_config
from prfaas.bench.sites import SitesInfo
from prfaas.bench.vllm_nodes import MIN_HEARTBEAT_TIMEOUT_S, vllm_config
from prfaas.core.lifecycle import ClusterKind
from prfaas.integrations.vllm.launch import VllmServerSpec


def test_nodes_point_at_their_servers_with_kv_on_the_site_address() -> None:
    info = SitesInfo(tag="t", prfaas_ns="p", local_ns="l", prfaas_dev="vp", local_dev="vl", prfaas_addr="10.77.0.1",
                     local_addr="10.77.0.2", cap_mbit=50.0, reverse_cap_mbit=None,
                     burst_kb=32, latency_ms=50)
    placed = place_on_sites(tiny_config(), info)
    specs = [VllmServerSpec(model="/ckpt", port=8100 + i, kv_port=node.kv_port, telemetry_port=9300 + i,
                            kv_events_port=9400 + i, secret_file=Path("s"), node_name=node.name, host=node.host,
                            kv_host=node.host) for i, node in enumerate(placed.nodes)]
    cfg = vllm_config(placed, "/ckpt", specs)
    assert cfg.model.name == "/ckpt" and cfg.model.served_name == placed.model.served_name
    assert cfg.gateway.heartbeat_timeout_s >= MIN_HEARTBEAT_TIMEOUT_S
    for i, (node, before) in enumerate(zip(cfg.nodes, placed.nodes, strict=True)):
        site_addr = info.prfaas_addr if node.cluster is ClusterKind.PRFAAS else info.local_addr
        assert node.engine == "vllm" and node.state_bytes_model == "/ckpt"
        assert node.host == before.host == site_addr and node.port == before.port  # the adapter stays put
        assert node.vllm_url == f"http://{site_addr}:{8100 + i}"
        assert node.kv_host == site_addr and node.kv_port == before.kv_port
        assert node.telemetry_url == f"http://127.0.0.1:{9300 + i}"
        assert node.kv_events_endpoint == f"tcp://{site_addr}:{9400 + i}"
