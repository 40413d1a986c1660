"""A screenshot of the operator's console during a `prfaas bench run` (docs/img/console.png in the README).

    python benchmarks/console_screenshot.py [--out docs/img/console.png] [--requests 120] [--rate-rps 2]
                                            [--after-s 45] [--config deploy.toml]

Starts `prfaas bench run --no-sites` (the tiny 4-layer model, loopback, the bandwidth-aware policy and a 0.2 Gbps
paced link unless --config says otherwise), signs the console in with the run's admin token, waits `--after-s`
seconds of traffic, asks for a what-if run, and saves a full-page screenshot taken by headless Chromium
(/usr/bin/chromium through Playwright; nothing is downloaded). The bench run is then left to finish.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DEFAULT_TOML = """
[model]
num_layers = 4
hidden_size = 128
max_batch_size = 32

[gateway]
port = 0
heartbeat_interval_s = 0.2

[policy]
name = "prfaas-bandwidth-aware"
threshold_tokens = 512
rebalance = false

[[links]]
capacity_gbps = 0.2
"""


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise SystemExit(f"bench run exited early ({proc.returncode})")
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear in {timeout_s:.0f}s")
        time.sleep(0.5)


def _healthy(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if json.loads(resp.read()).get("ready"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"gateway {url} not ready in {timeout_s:.0f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "console.png")
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--requests", type=int, default=120)
    ap.add_argument("--rate-rps", type=float, default=2.0)
    ap.add_argument("--after-s", type=float, default=45.0)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()

    from playwright.sync_api import expect, sync_playwright

    work = Path(tempfile.mkdtemp(prefix="prfaas-console-shot-"))
    config = args.config or work / "deploy.toml"
    if args.config is None:
        config.write_text(DEFAULT_TOML, encoding="utf-8")
    out_dir = work / "bench"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH"))
                                                       if p)}
    cmd = [sys.executable, "-m", "prfaas.cli", "bench", "run", "--no-sites", "--config", str(config),
           "--requests", str(args.requests), "--rate-rps", str(args.rate_rps), "--out", str(out_dir)]
    print("running:", " ".join(cmd))
    with (work / "bench.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        resolved = out_dir / "deploy" / "config.json"
        _wait_for(resolved, proc, 300)
        gateway = json.loads(resolved.read_text())["gateway"]
        url = f"http://{gateway['host']}:{gateway['port']}"
        token = Path(gateway["admin_token_file"]).read_text().strip()
        _healthy(url, 300)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.goto(f"{url}/console")
            page.fill("#token", token)
            page.click("#login-form button")
            expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=60_000)
            time.sleep(max(0.0, args.after_s - 10))
            req = urllib.request.Request(f"{url}/admin/console/whatif", data=b"", method="POST",
                                         headers={"authorization": f"Bearer {token}"})
            with contextlib.suppress(OSError):  # 429: an automatic run is running or just ran; it is shown anyway
                urllib.request.urlopen(req, timeout=10).close()
            time.sleep(10)
            offloaded = page.locator('#requests tr[data-route="prfaas"]').first
            if offloaded.count():
                offloaded.click()  # the detail panel shows one offloaded request
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
        print(f"screenshot: {args.out}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
        print(f"bench log and results: {work}")


if __name__ == "__main__":
    main()
