#!/usr/bin/env python3
"""Hot reload, measured end to end against a running `gavel serve`.

1. Time from "activate" answered to live on every core: bid ids are
   "<core>-<sequence>", so each answer says which core made it; after each
   switch the script finds, per core, the first answer from the new version.
2. Bid latency while versions switch every 100 ms, against steady state,
   both measured with wrk (closed loop; compare percentiles, not rates).

Usage: benches/e2e/reload.py DATA_DIR   (a fresh data dir made by `gavel
serve`, with demo-tokens.txt; the server must be running on
127.0.0.1:8080/8081; needs wrk, from Debian's package).
Only 127.0.0.1 is ever contacted; every loop is bounded.
"""
import json, pathlib, socket, subprocess, sys, threading, time

BID, ADMIN = ("127.0.0.1", 8080), ("127.0.0.1", 8081)
REPO = pathlib.Path(__file__).resolve().parents[2]
REQUEST = REPO.parent / "shared/openrtb-2.6/jsonschema/examples/bid-requests/simple-banner.json"
WASM = REPO / "target/strategies/wasm32-unknown-unknown/release/strategy_floor_margin.wasm"
POST_LUA = REPO / "benches/e2e/post.lua"

def tokens(data_dir):
    out = {}
    for line in open(f"{data_dir}/demo-tokens.txt"):
        parts = line.split()
        if parts and parts[0] == "operator": out["operator"] = parts[1]
        elif parts and parts[0] == "tenant": out[parts[1]] = parts[2]
    return out

def admin(method, path, token, body=b""):
    s = socket.create_connection(ADMIN, timeout=120)
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    data = b""
    while chunk := s.recv(65536): data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert 200 <= status < 300, (path, status, payload)
    return json.loads(payload)

def read_response(s, buf):
    while b"\r\n\r\n" not in buf: buf += s.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    while len(rest) < length: rest += s.recv(65536)
    return head, rest[:length], rest[length:]

def main():
    data_dir = sys.argv[1]
    tok = tokens(data_dir)
    op = tok["operator"]
    for other in ("pacing", "targeting", "deal-bidder", "floor-margin"):
        admin("POST", f"/v1/tenants/{other}/pause", op)
    # Version 2 of fixed-cpm: the floor-margin module (prices 0.036 here).
    v2 = admin("POST", "/v1/tenants/fixed-cpm/versions", op, WASM.read_bytes())["version"]
    admin("POST", "/v1/tenants/fixed-cpm/rollback", op)
    body = open(REQUEST, "rb").read()
    raw = b"POST /bid HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    log, stop = [], threading.Event()
    def client():
        s, buf = socket.create_connection(BID), b""
        while not stop.is_set():
            s.sendall(raw)
            _, payload, buf = read_response(s, buf)
            bid = json.loads(payload)["seatbid"][0]["bid"][0]
            log.append((time.monotonic(), bid["id"].split("-")[0], bid["price"]))
    threads = [threading.Thread(target=client) for _ in range(4)]
    [t.start() for t in threads]
    delays, calls = [], []
    for i in range(10):
        time.sleep(0.3)
        target = "/v1/tenants/fixed-cpm/versions/%d/activate" % v2 if i % 2 == 0 else "/v1/tenants/fixed-cpm/rollback"
        new_price = 0.036 if i % 2 == 0 else 1.5
        t0 = time.monotonic(); admin("POST", target, op); t1 = time.monotonic()
        calls.append(t1 - t0)
        time.sleep(0.2)
        for core in {c for _, c, _ in log}:
            first = min((t for t, c, p in log if c == core and t >= t0 and abs(p - new_price) < 1e-9), default=None)
            if first is not None: delays.append(max(first - t1, 0.0))
    stop.set(); [t.join() for t in threads]
    print(f"switch call (compile + store + publish): median {sorted(calls)[len(calls)//2]*1e3:.1f} ms, max {max(calls)*1e3:.1f} ms")
    print(f"answered to live on a core: median {sorted(delays)[len(delays)//2]*1e6:.0f} us, max {max(delays)*1e6:.0f} us over {len(delays)} core switches")

    def wrk(seconds):
        out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", "-s", str(POST_LUA), "http://127.0.0.1:8080/bid"],
                             capture_output=True, text=True, cwd=REPO).stdout
        return [l.strip() for l in out.splitlines() if l.strip().startswith(("50%", "90%", "99%", "Requests/sec", "Latency "))]
    print("steady:", wrk(8))
    burst_stop = threading.Event()
    def reloads():
        i = 0
        while not burst_stop.is_set():
            admin("POST", "/v1/tenants/fixed-cpm/versions/%d/activate" % v2 if i % 2 == 0 else "/v1/tenants/fixed-cpm/rollback", op)
            i += 1; time.sleep(0.1)
        print(f"reloads during the burst: {i}")
    r = threading.Thread(target=reloads); r.start()
    print("reloading every 100 ms:", wrk(8))
    burst_stop.set(); r.join()

main()
