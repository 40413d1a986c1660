"""Config tree: defaults, TOML errors naming key and line, resolution and the resolved JSON round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from prfaas.core.errors import ConfigError
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.serve.config import default_config, load_config, policy_config, resolve_ports, write_resolved


def test_default_config_is_the_embedded_deployment() -> None:
    cfg = default_config()
    assert [(n.cluster, n.role) for n in cfg.nodes] == [
        (ClusterKind.PRFAAS, Role.PRFAAS_PREFILL), (ClusterKind.PD, Role.PD_PREFILL), (ClusterKind.PD, Role.PD_DECODE)]
    assert cfg.gateway.port == 8000
    assert policy_config(cfg).threshold_tokens == cfg.policy.threshold_tokens


def test_resolve_ports_and_json_round_trip(tmp_path: Path) -> None:
    cfg = resolve_ports(default_config())
    ports = [n.port for n in cfg.nodes] + [n.kv_port for n in cfg.nodes]
    assert all(p > 0 for p in ports) and len(set(ports)) == len(ports)
    path = write_resolved(cfg, tmp_path)
    assert load_config(path) == cfg


def test_resolved_ports_of_a_large_deployment_are_all_distinct() -> None:
    """Ports are held until all are chosen (a probe closed before the next one lets the OS hand its port out
    again): every port of a deployment, the gateway's included, is distinct."""
    import msgspec

    base = default_config()
    cfg = msgspec.structs.replace(base, gateway=msgspec.structs.replace(base.gateway, port=0),
                                  nodes=[msgspec.structs.replace(base.nodes[i % 3], name=f"n{i}", port=0, kv_port=0)
                                         for i in range(20)])
    resolved = resolve_ports(cfg)
    ports = [resolved.gateway.port] + [p for n in resolved.nodes for p in (n.port, n.kv_port)]
    assert all(p > 0 for p in ports) and len(set(ports)) == 41



def test_resolved_ports_never_repeat_a_port_the_config_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed gateway port that nothing has bound yet (a caller probed it with free_port and released it) may be
    handed out again by the OS: a node must not get it (the gateway and the node would collide and `prfaas up`
    would exit before its banner; the cause of a flaky console test)."""
    import msgspec

    from prfaas.serve import config as config_module

    base = default_config()
    cfg = msgspec.structs.replace(base, gateway=msgspec.structs.replace(base.gateway, port=41000))
    handed_out = iter(range(41000, 41100))  # the OS hands out the fixed port first
    monkeypatch.setattr(config_module, "free_ports", lambda host, count: [next(handed_out) for _ in range(count)])
    resolved = resolve_ports(cfg)
    ports = [p for n in resolved.nodes for p in (n.port, n.kv_port)]
    assert resolved.gateway.port == 41000 and 41000 not in ports and len(set(ports)) == len(ports)

def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deploy.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "needle"), [
    ("[model]\nnum_layers = 'eight'\n", "deploy.toml:2: model.num_layers"),
    ("[gateway]\nport = 70000\n", "deploy.toml:2: gateway.port"),
    ("[policy]\nname = 'fastest'\n", "deploy.toml:2: policy.name"),
    ("[policy.bandwidth]\nbogus = 1\n", "policy.bandwidth.bogus"),
    ("[[nodes]]\nname = 'a'\ncluster = 'prfaas'\nrole = 'pd_decode'\n", "deploy.toml:4: nodes[0].role"),
    ("[[nodes]]\nname = 'a'\ncluster = 'pd'\nrole = 'pd_prefill'\n", "pd_decode node"),
    ("[transport]\nshared_secret = 'short'\n", "transport.shared_secret"),
    ("[model\n", "TOML syntax error"),
    ("[gateway]\nportt = 1\n", "gateway.portt: unknown key"),
])
def test_bad_files_name_the_key_and_line(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert needle in str(info.value)


def test_partial_file_keeps_default_nodes(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "[model]\nnum_layers = 4\nhidden_size = 128\n"))
    assert cfg.model.num_layers == 4 and len(cfg.nodes) == 3
