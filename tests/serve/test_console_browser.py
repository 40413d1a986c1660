"""The operator's console in a real headless Chromium (Playwright, the distribution's /usr/bin/chromium), against a
multi-process deployment (gateway + PrfaaS + PD-P + PD-D processes; stub model, bandwidth-aware policy).

One scenario, in order (each step needs the previous one's state):
  1. sign in with the admin token; offloaded and local requests appear with their routes and reasons; clicking a
     row shows its details;
  2. the link degrades (the PrfaaS node restarts with a link capacity 25,000x lower, as a `tc` cap drop would do to
     its senders, and offloads keep coming): the page shows the threshold raised by the bandwidth-aware loop with
     its reason, and a request between t and t' is kept local as `link_congested_local`;
  3. the gateway is SIGKILLed and started again: the page reconnects by itself, throws its state away (the old
     process's threshold events are gone), reloads the request table from the restarted gateway and shows new
     requests.
Screenshots go to $PRFAAS_TEST_ARTIFACTS (or the test's tmp dir); their paths are printed.
Needs the Debian packages `chromium` (and Playwright, a dev dependency); skips only if Chromium is absent.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from serve_helpers import get_json, metrics, post

from prfaas.bench.deploy import BenchLauncher, with_link
from prfaas.serve.config import load_config, write_resolved

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium chromium-driver)",
                allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402  (after the Chromium check)

pytestmark = [pytest.mark.network, pytest.mark.slow]

BASE_THRESHOLD = 256
HEALTHY_GBPS = 1.0
DEGRADED_GBPS = 0.00004  # 5 kB/s: the offloads below deliver several times that (utilisation >> util_high)

CONSOLE_TOML = f"""
[model]
name = "stub"
stub_step_s = 0.005

[gateway]
port = 0
heartbeat_interval_s = 0.2
heartbeat_timeout_s = 1.5
route_wait_s = 30.0

[policy]
name = "prfaas-bandwidth-aware"
threshold_tokens = {BASE_THRESHOLD}
rebalance = false

[policy.bandwidth]
control_interval_s = 0.2
hot_updates = 2
recover_updates = 100000   # once raised, t' stays up for the rest of the test

[[links]]
capacity_gbps = {HEALTHY_GBPS}
"""

UI_TIMEOUT_MS = 30_000


def _artifacts(tmp_path: Path) -> Path:
    root = os.environ.get("PRFAAS_TEST_ARTIFACTS")
    out = Path(root) / "console" if root else tmp_path / "artifacts"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _shot(page: Page, out: Path, name: str) -> None:
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchLauncher]:
    root = tmp_path_factory.mktemp("console")
    path = root / "deploy.toml"
    path.write_text(CONSOLE_TOML, encoding="utf-8")
    with BenchLauncher(load_config(path), root / "run") as launcher:
        launcher.wait_ready(timeout_s=120)
        yield launcher


def _prompt(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(1, 2000) for _ in range(n)]


def _complete(dep: BenchLauncher, prompt: list[int], max_tokens: int = 4) -> int:
    status, body = post(f"{dep.url}/v1/completions", {"model": "default", "prompt": prompt,
                                                      "max_tokens": max_tokens, "temperature": 0})
    assert status == 200, body
    return int(body["id"].removeprefix("cmpl-"))


def _row(page: Page, request_id: int) -> Any:
    return page.locator(f'#requests tr[data-request-id="{request_id}"]')


def _degrade_link(dep: BenchLauncher) -> None:
    """The PrfaaS senders' link capacity drops (restart of the PrfaaS node with the lower capacity; the gateway
    keeps running and learns the capacity from the node's link telemetry)."""
    dep.cfg = with_link(dep.cfg, DEGRADED_GBPS)
    write_resolved(dep.cfg, dep.run_dir)
    dep.restart("prfaas-0")
    dep.wait_ready(timeout_s=60)


def _offload_load(dep: BenchLauncher, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        post(f"{dep.url}/v1/completions", {"model": "default", "prompt": _prompt(rng, 3000), "max_tokens": 2,
                                           "temperature": 0}, timeout_s=30)


def test_console_shows_routes_threshold_changes_and_survives_a_gateway_restart(dep: BenchLauncher,
                                                                               tmp_path: Path) -> None:
    out = _artifacts(tmp_path)
    token = dep.admin_headers()["authorization"].split(" ", 1)[1]
    rng = random.Random(15)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1200})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{dep.url}/console")
            expect(page.locator("#status")).to_have_attribute("data-state", "signed-out")
            page.fill("#token", "not-the-token")
            page.click("#login-form button")
            expect(page.locator("#login-error")).to_contain_text("Incorrect admin token", timeout=UI_TIMEOUT_MS)
            page.fill("#token", token)
            page.click("#login-form button")
            expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=UI_TIMEOUT_MS)
            expect(page.locator('.node[data-node="prfaas-0"]')).to_contain_text("prfaas_prefill")
            expect(page.locator('.node[data-node="pd-1"]')).to_contain_text("pd_decode")

            # 1. offloaded and local requests, with their routes and reasons
            offloaded = _complete(dep, _prompt(rng, 2000))
            local = _complete(dep, _prompt(rng, 100))
            for request_id, route, reason in ((offloaded, "prfaas", "long_offload"), (local, "local", "short_local")):
                row = _row(page, request_id)
                expect(row).to_have_attribute("data-route", route, timeout=UI_TIMEOUT_MS)
                expect(row.locator("td.reason")).to_have_text(reason)
            _row(page, offloaded).click()
            expect(page.locator('#detail dd[data-field="route"]')).to_have_text("prfaas")
            expect(page.locator('#detail dd[data-field="reason"]')).to_have_text("long_offload")
            expect(page.locator('#detail dd[data-field="prefill node"]')).to_have_text("prfaas-0")
            expect(page.locator('#detail dd[data-field="uncached tokens"]')).to_have_text("2000")
            expect(page.locator('.bar-row[data-reason="long_offload"] .bar-value')).not_to_have_text("0")
            expect(page.locator('#ttft-hist .hist-block[data-route="prfaas"]')).to_be_visible()
            _shot(page, out, "1-routes")

            # 2. the link degrades: the short-term loop raises t' and the page says why
            _degrade_link(dep)
            stop = threading.Event()
            load = [threading.Thread(target=_offload_load, args=(dep, stop, k), daemon=True) for k in range(4)]
            for thread in load:
                thread.start()
            try:
                raised = page.locator("#threshold-events li.kind-short_term").first
                expect(raised).to_contain_text("raised", timeout=60_000)
                expect(raised).to_contain_text("egress link hot")
                expect(raised).to_contain_text(">= 90%")  # the signal that was hot: utilisation over util_high
                effective = int(get_json(f"{dep.url}/admin/console/snapshot", dep.admin_headers())
                                ["snapshot"]["frame"]["router"]["threshold_tokens"])
                assert effective > BASE_THRESHOLD
                # /metrics (and so the Grafana dashboard) carries the threshold in force too, not the base t
                assert metrics(dep.url)["prfaas_threshold_tokens"] >= effective
                expect(page.locator("#threshold-now")).to_contain_text(f"{effective} tokens")
                between = _complete(dep, _prompt(rng, (BASE_THRESHOLD + effective) // 2 + 1))
                row = _row(page, between)
                expect(row).to_have_attribute("data-route", "local", timeout=UI_TIMEOUT_MS)
                expect(row.locator("td.reason")).to_have_text("link_congested_local")
                expect(page.locator("#link-util")).not_to_have_text("0%")
                _shot(page, out, "2-link-degraded")
            finally:
                stop.set()
                for thread in load:
                    thread.join(60)

            # 3. the gateway restarts: the page reconnects and starts over from the new process's state
            old_boot = page.locator("body").get_attribute("data-boot-id")
            newest = int(page.locator("#requests tbody tr").first.get_attribute("data-request-id") or 0)
            restarted_at = time.time()
            dep.restart("gateway")
            dep.wait_ready(timeout_s=60)
            expect(page.locator("#status")).to_have_attribute("data-restarts", "1", timeout=UI_TIMEOUT_MS)
            expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=UI_TIMEOUT_MS)
            assert page.locator("body").get_attribute("data-boot-id") != old_boot
            assert int(page.locator("#status").get_attribute("data-connects") or 0) >= 2
            # no stale state: every threshold change shown is the new process's (its first is its start; the old
            # process's raises are gone, though the new one may raise again on what the link still reports)
            expect(page.locator("#threshold-events li.kind-initial")).to_have_count(1)
            times = [float(t) for t in page.locator("#threshold-events li").evaluate_all(
                "items => items.map(li => li.dataset.t)")]
            assert times and min(times) >= restarted_at, (times, restarted_at)
            assert page.locator("#threshold-events li").last.get_attribute("data-kind") == "initial"
            # the request table comes back from the restarted gateway's log, and new requests keep arriving
            expect(_row(page, newest)).to_be_visible()
            after = _complete(dep, _prompt(rng, 2000))
            expect(_row(page, after)).to_have_attribute("data-reason", "long_offload", timeout=UI_TIMEOUT_MS)
            _shot(page, out, "3-after-gateway-restart")
            assert not errors, errors
        finally:
            browser.close()


def test_the_console_page_holds_no_data_and_the_feed_needs_the_admin_token(dep: BenchLauncher) -> None:
    status, body = post(f"{dep.url}/admin/console/whatif", b"")
    assert status == 401, body
    snapshot = get_json(f"{dep.url}/admin/console/snapshot", dep.admin_headers())
    assert snapshot["boot_id"] and msgspec.json.encode(snapshot)
