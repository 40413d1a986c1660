"""prfaas on vLLM, end to end on this CPU: prefill on one vLLM instance, the state over our TCP transport (the
prfaas connector loaded by module path into unmodified vLLM servers), decode on another. Greedy output must be
token-identical to a colocated vLLM instance; the decode instance must not recompute the prompt; a corrupted or
missing transfer must end in a correct completion (vLLM recomputes) and never in output from bad state.

Needs the vLLM venv (`prfaas vllm install`); minutes per model family (servers start in 1-3 min here).
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from pathlib import Path

import pytest
from tests.integrations.vllm_fixtures import Pair, require_venv, start_pair

from prfaas.integrations.vllm.harness import first_token_then_decode, metric_value

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(3600)]

_ids = itertools.count()


def _prompt(n: int, salt: int) -> list[int]:
    return [(i * 7919 + salt * 104729) % 500 + 3 for i in range(n)]


def _reference(pair: Pair, prompt: list[int], max_tokens: int) -> list[int]:
    """Colocated vLLM: the whole request on the prefill instance (after the P/D run, so it cannot help it)."""
    body = pair.servers.complete(pair.prefill.port, {"prompt": prompt, "max_tokens": max_tokens})
    return list(body["choices"][0]["token_ids"])


def _pd(pair: Pair, prompt: list[int], max_tokens: int, **kw: object) -> tuple[list[int], dict, dict]:
    return first_token_then_decode(pair.servers, pair.prefill.port, pair.decode.port, pair.decode.kv_port, prompt,
                                   max_tokens, f"t{next(_ids)}", **kw)  # type: ignore[arg-type]


def _external_tokens(pair: Pair) -> float:
    return metric_value(pair.servers.metrics(pair.decode.port), "vllm:prompt_tokens_by_source_total",
                        source="external_kv_transfer")


# (family, prefix caching): vLLM's CPU Mamba2 kernels fail with prefix caching on ("align" mode checkpoints), so
# those families run without it
# granitemoehybrid and falcon-h1 (Mamba2 hybrids; falcon-h1 runs attention and SSM in parallel in every layer) are
# families our own engine cannot run
FAMILIES = [("llama", True), ("qwen3-next", True), ("granitemoehybrid", False), ("falcon-h1", False)]


@pytest.fixture(scope="module", params=FAMILIES, ids=[f for f, _ in FAMILIES])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    venv = require_venv()
    family, prefix_caching = request.param
    started = start_pair(venv, tmp_path_factory.mktemp(f"vllm-{family}"), family, prefix_caching=prefix_caching)
    started.prefix_caching = prefix_caching
    yield started
    started.servers.stop_all()


@pytest.mark.parametrize("n", [9, 200, 1500])
def test_pd_through_prfaas_transport_is_token_identical_and_not_recomputed(pair: Pair, n: int) -> None:
    prompt = _prompt(n, salt=n)
    before = pair.counters(pair.decode)
    external_before = _external_tokens(pair)
    got, pre, dec = _pd(pair, prompt, max_tokens=16)
    assert got == _reference(pair, prompt, 16)
    after = pair.counters(pair.decode)
    # every prompt position arrived by transfer; vLLM computed only token 0's position
    assert after["positions_loaded"] - before["positions_loaded"] == n
    assert after["loads_done"] == before["loads_done"] + 1 and after["load_failures"] == before["load_failures"]
    assert _external_tokens(pair) - external_before == n
    assert pre["kv_transfer_params"]["prfaas"]["streamed"] is True
    assert dec["usage"]["prompt_tokens"] == n + 1


_CATALOG_DTYPE = {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16"}


def _arch(pair: Pair):
    """The catalog's architecture of the served checkpoint, with the element types vLLM keeps the state in (its
    telemetry says: e.g. GDN's recurrent state in fp32, its conv state in the model dtype)."""
    import json

    from prfaas.integrations.vllm.catalog_arch import arch_from_config

    cfg = json.loads((Path(pair.prefill.model) / "config.json").read_text())
    states = [layer for layer in pair.telemetry(pair.prefill)["layers"] if layer["kind"] == "state"]
    if not states:
        return arch_from_config(cfg)
    conv, recurrent = states[0]["state_dtypes"][0], states[0]["state_dtypes"][-1]
    return arch_from_config(cfg, state_dtype=_CATALOG_DTYPE[recurrent], conv_dtype=_CATALOG_DTYPE[conv])


def test_bytes_on_the_wire_are_the_catalogs_s_kv(pair: Pair) -> None:
    """Attention layers ship exactly the prompt's positions (no block padding), state layers their tensors: the
    bytes equal S_kv(l) of the planner's catalog for the same architecture."""
    from prfaas.perf.arch import s_kv_bytes

    sent_before = pair.counters(pair.prefill)["bytes_sent"]
    _pd(pair, _prompt(333, salt=5), max_tokens=2)
    assert pair.counters(pair.prefill)["bytes_sent"] - sent_before == s_kv_bytes(_arch(pair), 333)


def test_decode_side_prefix_only_the_increment_crosses(pair: Pair) -> None:
    from prfaas.perf.arch import kv_bytes_per_token, s_kv_bytes

    if not pair.prefix_caching:
        pytest.skip("this family runs without vLLM's prefix cache on CPU")
    # vLLM caches prefixes in whole blocks (a hybrid model's blocks are large: 1,152 positions for tiny Qwen3-Next)
    block = max(layer["block_size"] for layer in pair.telemetry(pair.decode)["layers"] if layer["kind"] != "state")
    held = block * -(-512 // block)
    shared = _prompt(held, salt=77)
    # the decode instance computes a request with this prefix itself: its prefix cache then holds those blocks
    pair.servers.complete(pair.decode.port, {"prompt": shared + _prompt(40, salt=78), "max_tokens": 1})
    prompt = shared + _prompt(300, salt=79)
    sent_before = pair.counters(pair.prefill)["bytes_sent"]
    loaded_before = pair.counters(pair.decode)["positions_loaded"]
    got, _pre, _dec = _pd(pair, prompt, max_tokens=12, skip_tokens=held)
    assert got == _reference(pair, prompt, 12)
    assert pair.counters(pair.decode)["positions_loaded"] - loaded_before == 300
    arch = _arch(pair)
    shipped = pair.counters(pair.prefill)["bytes_sent"] - sent_before
    assert shipped == s_kv_bytes(arch, held + 300) - held * kv_bytes_per_token(arch)


class _CorruptingProxy:
    """Forwards TCP to the decode receiver, flipping one byte every `every_bytes` of the sender's stream after the
    first `skip_bytes` (the handshake): checksums must catch it."""

    def __init__(self, target_port: int, every_bytes: int, skip_bytes: int = 4096) -> None:
        self.target_port, self.every, self.skip = target_port, every_bytes, skip_bytes
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.flipped = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, corrupt: bool) -> None:
        seen = 0
        try:
            while data := src.recv(65536):
                if corrupt:
                    buf = bytearray(data)
                    for pos in range(len(buf)):
                        offset = seen + pos
                        if offset >= self.skip and (offset - self.skip) % self.every == self.every - 1:
                            buf[pos] ^= 0x5A
                            self.flipped += 1
                    data = bytes(buf)
                seen += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


def _recomputed_here(pair: Pair, prompt: list[int], first: list[int], max_tokens: int) -> list[int]:
    """What the decode instance computes for the request when it recomputes it (no transfer): the prompt and token 0
    in one prefill, then decode steps. This, not the colocated run, is the reference for a recompute: a 701-token
    prefill is not bit-identical to a 700-token prefill plus a decode step on every CPU (GEMM blocking differs with
    the batch's length), and a tiny random-weight model's flat logits turn such rounding into another argmax."""
    body = pair.servers.complete(pair.decode.port, {"prompt": prompt + first, "max_tokens": max_tokens - 1})
    return first + list(body["choices"][0]["token_ids"])


def test_corrupted_transfer_is_never_decoded(pair: Pair) -> None:
    """Every chunk corrupted: the transfer fails its checksums, the decode instance reports a failed load, vLLM
    recomputes the prompt, and the completion is exactly the decode instance's own computation of the request."""
    proxy = _CorruptingProxy(pair.decode.kv_port, every_bytes=8192)
    try:
        prompt = _prompt(700, salt=11)
        before = pair.counters(pair.decode)
        got, _pre, _dec = first_token_then_decode(pair.servers, pair.prefill.port, pair.decode.port, proxy.port,
                                                  prompt, 10, f"bad{next(_ids)}", wait_s=30)
    finally:
        proxy.close()
    assert proxy.flipped > 0
    after = pair.counters(pair.decode)
    assert after["load_failures"] == before["load_failures"] + 1
    assert after["positions_loaded"] == before["positions_loaded"]  # nothing from the bad transfer was used
    colocated = _reference(pair, prompt, 10)
    assert got[:1] == colocated[:1]  # token 0 came from the prefill instance
    assert got == _recomputed_here(pair, prompt, got[:1], 10), f"colocated run: {colocated}"


def test_transfer_that_never_arrives_is_recomputed_after_its_wait(pair: Pair) -> None:
    """The prefill instance dies before sending (here: nobody sends): the decode instance waits `wait_s`, reports
    the load failed and vLLM recomputes; the completion is correct."""
    prompt = _prompt(260, salt=12)
    first = _reference(pair, prompt, 1)
    before = pair.counters(pair.decode)
    from prfaas.integrations.vllm.params import RecvParams, to_params

    body = pair.servers.complete(pair.decode.port, {
        "prompt": prompt + first, "max_tokens": 7,
        "kv_transfer_params": to_params(RecvParams(transfer_id="never-sent", num_tokens=260, wait_s=3.0))})
    assert pair.counters(pair.decode)["load_failures"] == before["load_failures"] + 1
    assert first + list(body["choices"][0]["token_ids"]) == _recomputed_here(pair, prompt, first, 8)


def test_killed_prefill_instance(pair: Pair) -> None:
    """Last in the module: SIGKILL the prefill instance; the prefill call fails with a connection error (the
    gateway's failure policy then recomputes locally, tests/serve), and a decode waiting for its state recomputes."""
    import urllib.error

    prompt = _prompt(200, salt=13)
    first = pair.servers.complete(pair.decode.port, {"prompt": prompt, "max_tokens": 1})["choices"][0]["token_ids"]
    reference = {"token_ids": _recomputed_here(pair, prompt, list(first), 6)}
    pair.servers.kill(pair.prefill.port)
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        _pd(pair, _prompt(150, salt=14), max_tokens=4)
    from prfaas.integrations.vllm.params import RecvParams, to_params

    body = pair.servers.complete(pair.decode.port, {
        "prompt": prompt + reference["token_ids"][:1], "max_tokens": 5,
        "kv_transfer_params": to_params(RecvParams(transfer_id="from-dead-prefill", num_tokens=200, wait_s=2.0))})
    assert reference["token_ids"][:1] + body["choices"][0]["token_ids"] == reference["token_ids"]
