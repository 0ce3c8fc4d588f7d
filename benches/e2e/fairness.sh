#!/usr/bin/env bash
# Fair cores, end to end: the other tenants' latency with and without a hog
# tenant that spends its whole allowed budget on every call.
#
# One serving core (unpinned), the five demo tenants, open-loop synthetic
# traffic from gavel-loadgen at RATE req/s for SECONDS; then the same with
# the `hog` hostile strategy uploaded as a sixth tenant at the caps
# (fuel_per_call=100000000, deadline_us=50000). Rounds alternate so that
# the machine's noise hits both alike. Prints median p50 / p99 (ms, latency
# from due) and the hog's own counters.
#
# usage: benches/e2e/fairness.sh [seconds] [rate] [rounds]
# FAIRNESS='tenant_core_share = 0.05\nwindow_ms = 1000' sets the [fairness]
# section (default: the server's defaults).
# needs: target/release/{gavel,gavel-loadgen} (cargo build --release -p gavel
# -p gavel-loadgen) and the hostile strategies (built by any workspace build).
set -euo pipefail
secs=${1:-10}; rate=${2:-200}; rounds=${3:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/release
hog=$root/target/strategies/wasm32-unknown-unknown/release/hostile_hog.wasm
[ -x "$bin/gavel" ] && [ -x "$bin/gavel-loadgen" ] && [ -f "$hog" ] || {
    echo "build first: cargo build --release -p gavel -p gavel-loadgen" >&2; exit 2; }
w=$(mktemp -d); trap 'kill $g 2>/dev/null; rm -rf "$w"' EXIT
"$bin/gavel-loadgen" synth --out "$w/synth.gcap" --duration "${secs}s" --rate "$rate" --seed 7 >/dev/null

run() { # label -> "p50 p99"
    "$bin/gavel-loadgen" replay --target 127.0.0.1:18181 "$w/synth.gcap" --rate "$rate" \
        --warmup 1s --quiet --json "$w/$1.json" >/dev/null
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); l=r['latency_ms']; print(l['p50'], l['p99'])" "$w/$1.json"
}

printf '[bid]\npin_cores = false\n[fairness]\n%b\n' "${FAIRNESS:-}" > "$w/g.toml"
"$bin/gavel" serve --config "$w/g.toml" --data-dir "$w/data" --cores 1 \
    --bid-listen 127.0.0.1:18181 --admin-listen 127.0.0.1:18182 > "$w/server.log" 2>&1 & g=$!
for _ in $(seq 300); do curl -sf 127.0.0.1:18182/readyz >/dev/null && break; sleep 0.1; done
op=$(awk '/^operator/ {print $NF}' "$w/data/demo-tokens.txt")
admin() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $op" "$@"; }
admin -X POST 127.0.0.1:18182/v1/tenants/hog >/dev/null
admin -X POST --data-binary @"$hog" \
    '127.0.0.1:18182/v1/tenants/hog/versions?fuel_per_call=100000000&deadline_us=50000' >/dev/null

declare -a A50 A99 B50 B99
for r in $(seq "$rounds"); do
    admin -X POST 127.0.0.1:18182/v1/tenants/hog/pause >/dev/null
    read -r p50 p99 < <(run "without-$r"); A50+=("$p50"); A99+=("$p99")
    admin -X POST 127.0.0.1:18182/v1/tenants/hog/resume >/dev/null
    read -r p50 p99 < <(run "with-$r"); B50+=("$p50"); B99+=("$p99")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-26s %10s %10s   %s\n' "" "p50 ms" "p99 ms" "all p50"
printf '%-26s %10s %10s   %s\n' "demo tenants" "$(med "${A50[@]}")" "$(med "${A99[@]}")" "${A50[*]}"
printf '%-26s %10s %10s   %s\n' "demo tenants + hog" "$(med "${B50[@]}")" "$(med "${B99[@]}")" "${B50[*]}"
curl -s 127.0.0.1:18182/metrics | grep -E '^gavel_tenant_(wall_nanoseconds_total|calls_total)\{tenant="hog"\}|^gavel_tenant_no_bids_total\{tenant="hog",reason="(over_share|no_bid|deadline|circuit_open)"\}'
