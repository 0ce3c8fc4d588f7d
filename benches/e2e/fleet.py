#!/usr/bin/env python3
"""The fleet, measured on loopback: three nodes, one NATS, one Redis.

1. Upload to live everywhere: the time from an upload's 201 on node A until
   nodes B and C report the new version live (polled every 2 ms), for
   UPLOADS uploads of the floor-margin example, each activated.
2. Lease traffic against the bid rate: every demo tenant gets a budget, one
   node takes open-loop traffic from gavel-loadgen at each RATE for SECONDS,
   and the script reads how many lease scripts the node ran
   (`gavel_ledger_syncs_total`) and Redis executed (`INFO commandstats`).

Usage: benches/e2e/fleet.py [uploads] [seconds] [rate ...]
Needs: target/release/{gavel,gavel-loadgen} (cargo build --release -p gavel
-p gavel-loadgen), nats-server and redis-server on the PATH.
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release")
WASM = os.path.join(
    ROOT, "target", "strategies", "wasm32-unknown-unknown", "release", "strategy_floor_margin.wasm"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    until = time.time() + timeout
    while time.time() < until:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {port}")


def call(port, method, path, token, body=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metric(port, series):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    raise SystemExit(f"no metric {series}")


def redis_scripts(port):
    info = subprocess.run(
        ["redis-cli", "-p", str(port), "info", "commandstats"], capture_output=True, text=True
    ).stdout
    return sum(
        int(m.group(2)) for m in re.finditer(r"cmdstat_(evalsha|eval):calls=(\d+)", info)
    )


def main():
    uploads = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    rates = [int(r) for r in sys.argv[3:]] or [1000, 10000]
    for tool in ("nats-server", "redis-server", "redis-cli"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install nats-server redis-server")
    work = tempfile.mkdtemp(prefix="gavel-fleet-")
    children = []
    try:
        nats, redis = free_port(), free_port()
        children.append(subprocess.Popen(
            ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(nats), "-sd", f"{work}/nats"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        children.append(subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(redis), "--save", "",
             "--dir", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(nats)
        wait_port(redis)
        nodes = []
        for name in ("a", "b", "c"):
            bid, admin = free_port(), free_port()
            log = open(f"{work}/{name}.log", "w")
            children.append(subprocess.Popen(
                [f"{BIN}/gavel", "serve", "--registry", f"nats://127.0.0.1:{nats}",
                 "--ledger", f"redis://127.0.0.1:{redis}", "--data-dir", f"{work}/{name}",
                 "--bid-listen", f"127.0.0.1:{bid}", "--admin-listen", f"127.0.0.1:{admin}",
                 "--cores", "1"], stdout=log, stderr=log))
            nodes.append((bid, admin))
            # The first node seeds; the others join a seeded registry.
            for _ in range(600):
                try:
                    if call(admin, "GET", "/readyz", "")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.05)
        tokens = open(f"{work}/a/demo-tokens.txt").read()
        operator = re.search(r"^operator (\S+)", tokens, re.M).group(1)
        (_, a_admin), others = nodes[0], [admin for _, admin in nodes[1:]]

        # 1. Upload to live everywhere.
        assert call(a_admin, "POST", "/v1/tenants/fleet-bench", operator)[0] == 201
        wasm = open(WASM, "rb").read()
        delays = []
        for _ in range(uploads):
            status, body = call(a_admin, "POST", "/v1/tenants/fleet-bench/versions", operator, wasm)
            answered = time.perf_counter()
            assert status == 201, body
            version = json.loads(body)["version"]
            pending = set(others)
            while pending:
                for admin in list(pending):
                    status, body = call(admin, "GET", "/v1/tenants/fleet-bench", operator)
                    view = json.loads(body) if status == 200 else {}
                    if view.get("live") and view["state"]["active"] == version:
                        pending.discard(admin)
                time.sleep(0.002)
            delays.append((time.perf_counter() - answered) * 1000)
        delays.sort()
        print(f"upload to live on both other nodes, {uploads} uploads: "
              f"median {statistics.median(delays):.0f} ms, "
              f"p90 {delays[int(len(delays) * 0.9) - 1]:.0f} ms, max {delays[-1]:.0f} ms")

        # 2. Lease traffic against the bid rate, on node A.
        for name in ("fixed-cpm", "floor-margin", "pacing", "targeting", "audience",
                     "deal-bidder", "fleet-bench"):
            status, _ = call(a_admin, "PUT", f"/v1/tenants/{name}/budget", operator,
                             b'{"total": 1000000.0}')
            assert status == 200, name
        time.sleep(1)
        capture = f"{work}/synth.gcap"
        bid_port = nodes[0][0]
        for rate in rates:
            subprocess.run([f"{BIN}/gavel-loadgen", "synth", "--out", capture, "--duration",
                            f"{seconds}s", "--rate", str(rate), "--seed", "7"],
                           check=True, stdout=subprocess.DEVNULL)
            syncs = metric(a_admin, 'gavel_ledger_syncs_total{result="ok"}')
            scripts = redis_scripts(redis)
            started = time.perf_counter()
            report = f"{work}/replay.json"
            subprocess.run([f"{BIN}/gavel-loadgen", "replay", "--target",
                            f"127.0.0.1:{bid_port}", capture, "--rate", str(rate), "--quiet",
                            "--json", report], check=True, stdout=subprocess.DEVNULL)
            elapsed = time.perf_counter() - started
            replay = json.load(open(report))
            node_syncs = metric(a_admin, 'gavel_ledger_syncs_total{result="ok"}') - syncs
            fleet_scripts = redis_scripts(redis) - scripts
            print(f"at {rate} req/s offered ({replay['achieved_rate']:.0f} achieved, "
                  f"p99 {replay['latency_ms']['p99']:.2f} ms): node A ran {node_syncs / elapsed:.0f} lease scripts/s; Redis ran "
                  f"{fleet_scripts / elapsed:.0f}/s for the three nodes "
                  f"(7 budgeted tenants, sync every 200 ms)")
            os.remove(capture)
    finally:
        for child in reversed(children):
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
