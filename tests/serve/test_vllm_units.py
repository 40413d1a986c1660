"""Units of the vLLM adapter: KV-event prefix tracking, /metrics + telemetry parsing, SSE parsing, config checks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from prfaas.core.blocks import block_hash_chain
from prfaas.core.errors import ConfigError, PrfaasError
from prfaas.core.lifecycle import ClusterKind, Role
from prfaas.serve.config import DeployConfig, NodeSection, check_config, default_config
from prfaas.serve.messages import SamplingMsg
from prfaas.serve.vllm_events import PrefixTracker, subscriber_address
from prfaas.serve.vllm_http import VllmError, completion_body, parse_choice, sse_events
from prfaas.serve.vllm_metrics import parse_metrics, parse_telemetry


def _tokens(n: int, salt: int = 0) -> list[int]:
    return [(i * 31 + salt) % 5000 for i in range(n)]


def _batch(*events: object) -> bytes:
    return msgspec.msgpack.encode([time.time(), list(events)])


def _stored(hashes: Sequence[object], parent: object, tokens: list[int], block_size: int = 16) -> dict[str, object]:
    return {"type": "BlockStored", "block_hashes": list(hashes), "parent_block_hash": parent, "token_ids": tokens,
            "block_size": block_size, "lora_id": None, "medium": "GPU"}


def _store_prompt(tracker: PrefixTracker, tokens: list[int], per_event: int, block_size: int = 16,
                  salt: str = "") -> list[bytes]:
    """Store the prompt's full blocks in several events (as vLLM does across scheduler steps); vLLM-style
    opaque hashes (bytes)."""
    n = len(tokens) // block_size
    hashes = [f"{salt}{i}".encode() for i in range(n)]
    for start in range(0, n, per_event):
        chunk = hashes[start:start + per_event]
        parent = hashes[start - 1] if start else None
        tracker.apply_batch(_batch(_stored(list(chunk), parent, tokens[start * block_size:(start + len(chunk))
                                                                         * block_size], block_size)))
    return hashes


def test_tracker_rebuilds_our_512_token_hash_chain_from_vllm_blocks() -> None:
    tracker = PrefixTracker()
    tokens = _tokens(1100)
    _store_prompt(tracker, tokens, per_event=7)
    assert tracker.held() == frozenset(block_hash_chain(tokens, include_partial=False))
    assert len(tracker.held()) == 2


def test_tracker_removal_drops_the_block_and_its_descendants() -> None:
    tracker = PrefixTracker()
    tokens = _tokens(1100)
    hashes = _store_prompt(tracker, tokens, per_event=100)
    first, _second = block_hash_chain(tokens, include_partial=False)
    tracker.apply_batch(_batch({"type": "BlockRemoved", "block_hashes": [hashes[50]], "medium": "GPU"}))
    assert tracker.held() == {first}  # our second block ends in vLLM block 63, a descendant of block 50
    assert len(tracker) == 50
    tracker.apply_batch(_batch({"type": "AllBlocksCleared"}))
    assert tracker.held() == frozenset() and len(tracker) == 0


def test_tracker_shared_prefix_is_counted_once_and_survives_one_branch() -> None:
    tracker = PrefixTracker()
    shared = _tokens(512, 1)
    a, b = shared + _tokens(512, 2), shared + _tokens(512, 3)
    ha = _store_prompt(tracker, a, per_event=64, salt="a")
    # b's first 32 blocks are a's (same vLLM hashes), then its own branch
    tracker.apply_batch(_batch(_stored(ha[:32], None, shared)))
    hb = [f"b{i}".encode() for i in range(32, 64)]
    tracker.apply_batch(_batch(_stored(hb, ha[31], _tokens(512, 3))))
    ours_a, ours_b = block_hash_chain(a), block_hash_chain(b)
    assert ours_a[0] == ours_b[0]
    assert tracker.held() == {ours_a[0], ours_a[1], ours_b[1]}
    tracker.apply_batch(_batch({"type": "BlockRemoved", "block_hashes": [ha[40]], "medium": "GPU"}))
    assert tracker.held() == {ours_a[0], ours_b[1]}


def test_tracker_ignores_orphans_bounds_itself_and_reads_the_array_form() -> None:
    tracker = PrefixTracker(max_blocks=40)
    tokens = _tokens(1024)
    tracker.apply_batch(_batch(_stored([b"x"], b"unknown-parent", tokens[:16])))
    assert len(tracker) == 0 and tracker.orphans_total == 1
    # int hashes, array-form events (older vLLMs); two prompts of 32 blocks each
    tracker.apply_batch(_batch(["BlockStored", list(range(1, 33)), None, tokens[:512], 16, None, "GPU"]))
    assert tracker.held() == {block_hash_chain(tokens[:512])[0]}
    other = _tokens(512, 7)
    tracker.apply_batch(_batch(["BlockStored", list(range(101, 133)), None, other, 16, None, "GPU"]))
    # over the bound: the oldest block went, and with it its whole chain (a prefix match needs the root)
    assert len(tracker) == 32 and tracker.held() == {block_hash_chain(other)[0]}
    tracker.apply_batch(b"\xc1 not msgpack")  # dropped, logged
    assert len(tracker) == 32


def test_subscriber_address_mirrors_vllm_bind_or_connect() -> None:
    assert subscriber_address("tcp://*:5557", "10.0.0.7") == ("tcp://10.0.0.7:5557", False)
    assert subscriber_address("tcp://127.0.0.1:5557", "127.0.0.1") == ("tcp://127.0.0.1:5557", True)


METRICS = """# HELP vllm:num_requests_running Running.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 1.0
# HELP vllm:num_requests_waiting Waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 2.0
# HELP vllm:kv_cache_usage_perc Usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
# HELP vllm:prompt_tokens_total Prompt tokens.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 1000.0
vllm:prompt_tokens_created{engine="0",model_name="m"} 1.7e9
# HELP vllm:prompt_tokens_cached_total Cached prompt tokens.
# TYPE vllm:prompt_tokens_cached_total counter
vllm:prompt_tokens_cached_total{engine="0",model_name="m"} 400.0
"""


def test_parse_metrics_sums_engines_and_skips_created() -> None:
    load = parse_metrics(METRICS)
    assert (load.running, load.waiting, load.kv_usage) == (4, 2, 0.25)
    assert load.computed_prompt_tokens_total == 600
    assert parse_metrics("").running == 0


def test_parse_telemetry_keeps_the_sender_links() -> None:
    snap = {"link_id": "a->b", "time_s": 1.0, "capacity_gbps": None, "goodput_gbps": 2.0, "window_s": 1.0,
            "bytes_total": 10, "transfers_total": 1, "transfers_failed": 0, "transfers_in_flight": 0,
            "bytes_in_flight": 0, "future_field": 1}
    links = parse_telemetry({"links": {"send": {"b": snap, "bad": {"x": 1}}, "receive": {"c": snap}}})
    assert len(links) == 1 and links[0].goodput_gbps == 2.0 and links[0].link_id == "a->b"
    assert parse_telemetry({}) == []


def test_completion_body_and_choice_parsing() -> None:
    sampling = SamplingMsg(max_tokens=9, temperature=0.5, top_p=0.9, seed=3)
    body = completion_body("m", [1, 2], sampling, max_tokens=1, stream=False, kv_params={"prfaas": {}})
    assert body["prompt"] == [1, 2] and body["return_token_ids"] and body["seed"] == 3
    assert body["max_tokens"] == 1 and body["kv_transfer_params"] == {"prfaas": {}}
    part = parse_choice({"choices": [{"token_ids": [5, 6], "finish_reason": "length"}],
                         "usage": {"prompt_tokens_details": {"cached_tokens": 32}}})
    assert part.token_ids == (5, 6) and part.finish_reason == "length" and part.cached_tokens == 32
    with pytest.raises(VllmError, match="no token_ids"):
        parse_choice({"choices": [{"text": "x"}]})


def test_sse_events_stop_at_done_and_raise_on_error() -> None:
    class Lines:
        def __init__(self, lines: list[bytes]) -> None:
            self.lines = lines

        def __aiter__(self) -> Lines:
            return self

        async def __anext__(self) -> bytes:
            if not self.lines:
                raise StopAsyncIteration
            return self.lines.pop(0)

    async def collect(lines: list[bytes]) -> list[object]:
        return [doc async for doc in sse_events(Lines(lines))]  # type: ignore[arg-type]

    docs = asyncio.run(collect([b'data: {"choices": []}\n', b"\n", b": keep-alive\n", b"data: [DONE]\n",
                                b'data: {"late": 1}\n']))
    assert docs == [{"choices": []}]
    with pytest.raises(VllmError, match="boom"):
        asyncio.run(collect([b'data: {"error": {"message": "boom"}}\n']))


def _vllm_node(**kw: object) -> NodeSection:
    base: dict[str, object] = {"name": "pd-9", "cluster": ClusterKind.PD, "role": Role.PD_DECODE, "engine": "vllm",
                               "vllm_url": "http://127.0.0.1:8100", "kv_port": 9100}
    return NodeSection(**{**base, **kw})  # type: ignore[arg-type]


def _vllm_config(**kw: object) -> DeployConfig:
    prefill = _vllm_node(name="pd-8", role=Role.PD_PREFILL, vllm_url="http://127.0.0.1:8101", kv_port=9101)
    return msgspec.structs.replace(default_config(), nodes=[prefill, _vllm_node(**kw)])


@pytest.mark.parametrize(("changes", "message"), [
    ({"engine": "sglang"}, "unknown engine 'sglang'"),
    ({"vllm_url": None}, "needs vllm_url"),
    ({"vllm_url": "http://127.0.0.1"}, "names no port"),
    ({"vllm_url": "ftp://h:1"}, "not an http"),
    ({"telemetry_url": "127.0.0.1:9"}, "telemetry_url"),
    ({"kv_port": 0}, "needs kv_port"),
    ({"kv_events_endpoint": "ipc:///tmp/x"}, "kv_events_endpoint"),
    ({"engine": "prfaas"}, "vllm_url is for engine"),
    ({"engine": "prfaas", "vllm_url": None, "kv_port": 0}, "every node of a deployment runs the same engine"),
    ({"state_bytes_model": "no-such-model"}, "state_bytes_model: not a catalog model or checkpoint folder"),
    ({"vllm_api_key_file": "/k", "vllm_api_key_env": "K"}, "vllm_api_key_env: give one of"),
    ({"engine": "prfaas", "vllm_url": None, "vllm_prefill_tokens": 4096}, "vllm_prefill_tokens is for engine"),
])
def test_vllm_node_config_errors_name_the_key(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_config(_vllm_config(**changes))


def test_vllm_node_config_valid_and_default_configs_unchanged() -> None:
    assert all(n.engine == "prfaas" for n in default_config().nodes)
    cfg = _vllm_config(telemetry_url="http://127.0.0.1:9200", kv_events_endpoint="tcp://*:5557")
    assert check_config(cfg).node("pd-9").vllm_url == "http://127.0.0.1:8100"


def test_without_kv_events_the_node_reports_what_it_prefilled() -> None:
    from prfaas.serve.vllm_node import VllmNodeServer

    node = VllmNodeServer(_vllm_config(), "pd-9", b"x" * 32)
    assert node.tracker is None and node.cached_blocks() == frozenset()
    prompt = _tokens(1100)
    node._remember_prefilled(prompt)
    assert node.cached_blocks() == frozenset(block_hash_chain(prompt, include_partial=False))
    beat = node.heartbeat()
    assert beat.cache_full and sorted(beat.cache_added) == sorted(node.cached_blocks())
    assert node._register_message().engine == "vllm" and node._register_message().kv_port == 9100


def test_state_bytes_model_gives_s_kv_points_and_transfer_bytes() -> None:
    from prfaas.catalog.models import load_model
    from prfaas.perf.arch import s_kv_bytes
    from prfaas.serve.vllm_node import VllmNodeServer

    assert VllmNodeServer(_vllm_config(), "pd-9", b"x" * 32).state_bytes_points() == []
    node = VllmNodeServer(_vllm_config(state_bytes_model="qwen3-next-80b-a3b"), "pd-9", b"x" * 32)
    node.max_context_tokens = 4096
    arch = load_model("qwen3-next-80b-a3b")
    points = node._register_message().state_bytes_points
    assert points[0] == (1, s_kv_bytes(arch, 1)) and points[-1] == (4095, s_kv_bytes(arch, 4095))
    assert node.shipped_bytes(1000) == s_kv_bytes(arch, 1000)
    assert node.shipped_bytes(1000, 512) == s_kv_bytes(arch, 1000) - s_kv_bytes(arch, 512)


def test_prfaas_up_checks_our_engine_model_only_when_a_node_runs_our_engine(tmp_path: Path) -> None:
    from prfaas.commands.up import resolve_up_config

    nodes = ('[[nodes]]\nname = "pd-0"\ncluster = "pd"\nrole = "pd_prefill"\n{extra}'
             '[[nodes]]\nname = "pd-1"\ncluster = "pd"\nrole = "pd_decode"\n{extra2}')
    vllm = ('engine = "vllm"\nvllm_url = "http://127.0.0.1:8100"\nkv_port = 9100\n',
            'engine = "vllm"\nvllm_url = "http://127.0.0.1:8101"\nkv_port = 9101\n')
    model = f'[model]\nname = "{tmp_path / "a-hybrid-checkpoint"}"\n'
    (tmp_path / "vllm.toml").write_text(model + nodes.format(extra=vllm[0], extra2=vllm[1]), encoding="utf-8")
    (tmp_path / "ours.toml").write_text(model + nodes.format(extra="", extra2=""), encoding="utf-8")
    assert resolve_up_config(tmp_path / "vllm.toml", None, None).nodes[0].engine == "vllm"
    with pytest.raises(PrfaasError, match="unknown model"):  # our engine cannot load it: refused before starting
        resolve_up_config(tmp_path / "ours.toml", None, None)


def test_vllm_api_key_from_a_file_or_the_environment(tmp_path: Path) -> None:
    from prfaas.serve.deploy_secrets import load_vllm_api_key

    key_file = tmp_path / "key"
    key_file.write_text("sekrit\n", encoding="utf-8")
    assert load_vllm_api_key(_vllm_node(vllm_api_key_file=str(key_file)), {}) == "sekrit"
    assert load_vllm_api_key(_vllm_node(vllm_api_key_env="K"), {"K": "abc"}) == "abc"
    assert load_vllm_api_key(_vllm_node(), {}) is None
    with pytest.raises(ConfigError, match="vllm_api_key_env: environment variable K is not set"):
        load_vllm_api_key(_vllm_node(vllm_api_key_env="K"), {})


def test_state_bytes_model_may_be_the_checkpoint_folder_vllm_serves(tmp_path: Path) -> None:
    from prfaas.perf.arch import s_kv_bytes
    from prfaas.serve.vllm_arch import served_arch

    config = {"model_type": "llama", "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 512, "intermediate_size": 128}
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    arch = served_arch(str(tmp_path))
    assert s_kv_bytes(arch, 100) == 100 * 4 * 2 * 2 * 32 * 2  # tokens x layers x (K, V) x kv heads x dim x bf16
    check_config(_vllm_config(state_bytes_model=str(tmp_path)))
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"state_bytes_model: .*config\.json"):
        check_config(_vllm_config(state_bytes_model=str(tmp_path)))


def test_a_prefill_skips_only_whole_vllm_blocks_the_decode_node_holds() -> None:
    """The decode node's held prefix (the gateway's KV index, 512-token blocks) is sent as skip_tokens rounded down
    to vLLM's own block size (from the connector's telemetry), never the whole prompt; unknown size: nothing skipped."""
    from types import SimpleNamespace

    from prfaas.serve.vllm_metrics import cache_block_tokens
    from prfaas.serve.vllm_node import VllmNodeServer

    doc = {"layers": [{"kind": "state", "block_size": 9999}, {"kind": "attention", "block_size": 1152}]}
    assert cache_block_tokens(doc) == 1152 and cache_block_tokens({}) == 0
    node = SimpleNamespace(cache_block_tokens=1152)
    skip = VllmNodeServer.skip_tokens
    assert skip(node, 2048, 3000) == 1152  # holds 2,048 = 1 whole block of 1,152
    assert skip(node, 512, 3000) == 0  # less than a block: ship everything
    assert skip(node, 5000, 2304) == 1152  # never the whole prompt: the last position is computed at decode
    assert skip(SimpleNamespace(cache_block_tokens=0), 4096, 5000) == 0


def test_a_negative_vllm_prefill_budget_is_refused_at_load(tmp_path: Path) -> None:
    from prfaas.serve.config import load_config

    text = """
[[nodes]]
name = "pd-0"
cluster = "pd"
role = "pd_decode"
engine = "vllm"
vllm_url = "http://127.0.0.1:8100"
kv_port = 9100
vllm_prefill_tokens = -1
"""
    path = tmp_path / "deploy.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="vllm_prefill_tokens"):
        load_config(path)
