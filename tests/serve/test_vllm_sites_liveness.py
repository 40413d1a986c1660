"""vLLM adapter nodes in a many-site deployment register and heartbeat where our engine's nodes do
(`serve.sites.node_gateways`): a PrfaaS node to every region gateway its cluster links to, a PD node to its own
region's gateway only, each gateway with its own cache report. In-process adapters against a fake vLLM
(tests/serve/fake_vllm.py) and two fake region gateways (loopback HTTP servers that sign their replies)."""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fake_vllm import FakeCluster, FakeVllm, two_region_config

from prfaas.serve.control_auth import ControlAuth, RefusalRecorder
from prfaas.serve.messages import Heartbeat, HeartbeatReply, NodeRegister, RegisterReply, decode, encode
from prfaas.serve.signing import HEADER_NONCE
from prfaas.serve.vllm_node import VllmNodeServer
from prfaas.transport.ports import free_port

SECRET = b"v" * 32
ANTI_HANG_S = 60.0


class _RegionGateway(BaseHTTPRequestHandler):
    """Answers register and heartbeat, signed; records (path, node name, cache_seq or -1)."""

    auth: ControlAuth
    seen: list[tuple[str, str, int]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.path.endswith("heartbeat"):
            beat = decode(body, Heartbeat)
            self.seen.append(("heartbeat", beat.name, beat.cache_seq))
            reply = encode(HeartbeatReply(known=True))
        else:
            self.seen.append(("register", decode(body, NodeRegister).name, -1))
            reply = encode(RegisterReply(accepted=True))
        self.send_response(200)
        for key, value in self.auth.reply_header(self.headers[HEADER_NONCE], 200).items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *_args: Any) -> None:
        pass


def _gateway(seen: list[tuple[str, str, int]]) -> ThreadingHTTPServer:
    handler = type("Handler", (_RegionGateway,), {"auth": ControlAuth(SECRET, RefusalRecorder()), "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _config(tmp_path: Path, ports: dict[str, int], fake: FakeVllm) -> Any:
    return two_region_config(tmp_path, fake, ports, heartbeat_s=0.05)


def test_vllm_nodes_heartbeat_to_their_region_gateways(tmp_path: Path) -> None:
    seen: dict[str, list[tuple[str, str, int]]] = {"ra": [], "rb": []}
    servers = {region: _gateway(rows) for region, rows in seen.items()}
    fake = FakeVllm(FakeCluster(), kv_port=free_port()).start()
    try:
        cfg = _config(tmp_path, {r: s.server_address[1] for r, s in servers.items()}, fake)
        asyncio.run(_run_nodes(cfg, seen))
    finally:
        fake.close()
        for server in servers.values():
            server.shutdown()
    for region in ("ra", "rb"):
        registered = {name for kind, name, _seq in seen[region] if kind == "register"}
        beating = {name for kind, name, _seq in seen[region] if kind == "heartbeat"}
        assert registered == beating == {"pa-0", f"{region}-d"}, (region, seen[region])
        # each gateway gets pa-0's cache report from a reporter of its own: its sequence starts at 1 there
        first_seq = next(seq for kind, name, seq in seen[region] if kind == "heartbeat" and name == "pa-0")
        assert first_seq == 1, (region, seen[region])


async def _run_nodes(cfg: Any, seen: dict[str, list[tuple[str, str, int]]]) -> None:
    nodes = [VllmNodeServer(cfg, name, SECRET) for name in ("pa-0", "ra-d", "rb-d")]
    for node in nodes:
        await node.start()

    def beating() -> bool:
        rows = {(region, name) for region, r in seen.items() for kind, name, _seq in list(r) if kind == "heartbeat"}
        return {("ra", "pa-0"), ("rb", "pa-0"), ("ra", "ra-d"), ("rb", "rb-d")} <= rows

    try:
        start = time.monotonic()
        while not beating():
            assert time.monotonic() - start < ANTI_HANG_S, seen
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # a few more beats: a node that went to the wrong gateway would show by now
    finally:
        for node in nodes:
            await node.close()
