"""A PD-D node dies while it streams a request: the gateway re-prefills prompt + tokens so far on another
path and the client's stream finishes normally (slower, not an error). Own deployment with two PD-D nodes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from serve_helpers import TINY_TOML, get_json, metrics, ready_deployment

from prfaas.serve.launcher import Launcher

pytestmark = pytest.mark.network

NODES = """
[[nodes]]
name = "prfaas-0"
cluster = "prfaas"
role = "prfaas_prefill"

[[nodes]]
name = "pd-0"
cluster = "pd"
role = "pd_prefill"

[[nodes]]
name = "pd-1"
cluster = "pd"
role = "pd_decode"

[[nodes]]
name = "pd-2"
cluster = "pd"
role = "pd_decode"
"""


@pytest.fixture(scope="module")
def two_decoders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    with ready_deployment(tmp_path_factory.mktemp("decode-loss"), TINY_TOML + NODES) as launcher:
        yield launcher


def _running_decoder(url: str, headers: dict[str, str]) -> str | None:
    for inst in get_json(f"{url}/admin/cluster", headers)["instances"]:
        if inst["role"] == "pd_decode" and inst["running_batch"] > 0:
            return str(inst["instance_id"])
    return None


def test_decode_node_lost_mid_stream_is_reprefilled_elsewhere(two_decoders: Launcher, tmp_path: Path) -> None:
    url = two_decoders.url
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", timeout=120, max_retries=0)
    stream = client.completions.create(model="default", prompt="a request that outlives its decoder",
                                       max_tokens=600, temperature=0, stream=True,
                                       stream_options={"include_usage": True},
                                       extra_headers={"x-prfaas-route": "local"})
    chunks = iter(stream)
    next(chunks)
    victim = None
    deadline = time.monotonic() + 60  # anti-hang bound
    while victim is None and time.monotonic() < deadline:
        victim = _running_decoder(url, two_decoders.admin_headers())
        time.sleep(0.02)
    assert victim is not None
    before = metrics(url)
    two_decoders.kill(victim)
    finishes, usage = [], None
    for chunk in chunks:
        finishes.extend(c.finish_reason for c in chunk.choices if c.finish_reason)
        usage = chunk.usage or usage
    assert finishes == ["length"]
    assert usage is not None and usage.completion_tokens == 600
    after = metrics(url)
    key = 'prfaas_failed_attempts_total{kind="decode_node_lost"}'
    assert after.get(key, 0) - before.get(key, 0) == 1
    cluster = get_json(f"{url}/admin/cluster", two_decoders.admin_headers())
    survivors = {i["instance_id"]: i["is_up"] for i in cluster["instances"]}
    assert survivors[victim] is False
