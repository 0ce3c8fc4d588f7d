#!/usr/bin/env bash
# Builds and runs Gavel's fuzz targets with libFuzzer on stable Rust.
#
#   fuzz/run.sh build              build every target (instrumented)
#   fuzz/run.sh TARGET SECONDS     fuzz one target; non-zero exit on a crash,
#                                  whose input is left in fuzz/artifacts/TARGET/
#   fuzz/run.sh smoke SECONDS      every target for SECONDS each (CI)
#   fuzz/run.sh merge TARGET|all   add the inputs found by runs that reach new
#                                  coverage to the committed corpus, minimized
#   fuzz/run.sh repro TARGET FILE  run one input, e.g. a crash artifact
#   fuzz/run.sh seed               regenerate the committed seeds and dictionary
#   fuzz/run.sh list               the target names
#
# Environment: FUZZ_ARGS adds libFuzzer flags (e.g. FUZZ_ARGS=-jobs=2).
# On a shared machine, run it as `nice -n 19 fuzz/run.sh ...`.
set -euo pipefail

caller_dir=$PWD
cd "$(dirname "$0")"
fuzz_dir=$PWD

targets=(json_request flatbuffers_request strategy_bids capture_reader http_head strategy_answer module_structure notice data_table)

# Largest input per target. Real requests are 1-10 KB and answers smaller;
# 64 KiB leaves room for every structure the decoders have while keeping
# executions fast. The decoders' own limits (1 MiB JSON, 4 MiB flatbuffer,
# 256 KiB answer, 4 MiB capture record) are checked before any parsing, so
# larger inputs would only test a length comparison.
max_len_bytes() {
    case $1 in
        json_request | flatbuffers_request | strategy_bids | capture_reader) echo 65536 ;;
        # A head is at most 16 KiB on either port; a little more tests the limit.
        http_head) echo 20000 ;;
        strategy_answer | module_structure) echo 65536 ;;
        # A token is at most 2,048 characters; a little more tests the limit.
        notice) echo 4096 ;;
        # Tables under the target's limits are at most about 2 KiB.
        data_table) echo 8192 ;;
        *) echo "unknown target '$1'; targets: ${targets[*]}" >&2; exit 2 ;;
    esac
}

# Memory per run: the capture reader may hold a 4 MiB body, the JSON bridge
# a few times its input; anything near 2 GiB is a bug (libFuzzer reports it
# as an out-of-memory crash with its input in artifacts/).
rss_limit_mb=2048
# A single input taking this long is a hang (verify + walk of the largest
# input takes milliseconds).
timeout_seconds=10

triple=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=$fuzz_dir/target
bin_dir=$CARGO_TARGET_DIR/$triple/release

# The flags `cargo fuzz build --sanitizer none` passes (cargo-fuzz
# src/project.rs), all stable: SanitizerCoverage with inline 8-bit counters,
# the PC table and comparison tracing for libFuzzer's feedback; `fuzzing` for
# code that wants to know. Branch folding is off so that every branch keeps
# its own counter. The profile in Cargo.toml adds debug assertions, overflow
# checks and one codegen unit.
instrumentation_flags=(
    --cfg fuzzing
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cllvm-args=-sanitizer-coverage-stack-depth
    -Cllvm-args=-simplifycfg-branch-fold-threshold=0
)

build() {
    # `--target` keeps RUSTFLAGS away from build scripts and proc macros,
    # which must not be instrumented (nothing would link libFuzzer into them).
    RUSTFLAGS="${instrumentation_flags[*]} ${RUSTFLAGS:-}" \
        cargo build --locked --release --target "$triple" --bins
}

libfuzzer_flags() {
    local target=$1
    local flags=(
        -max_len="$(max_len_bytes "$target")"
        -rss_limit_mb=$rss_limit_mb
        -timeout=$timeout_seconds
        -print_final_stats=1
    )
    if [[ -f dict/$target.dict ]]; then
        flags+=(-dict="dict/$target.dict")
    fi
    echo "${flags[@]}"
}

# Runs one target on its committed corpus for a time budget. New inputs go
# to target/corpus/TARGET (not committed; `merge` picks the useful ones).
run() {
    local target=$1 seconds=$2
    max_len_bytes "$target" >/dev/null
    mkdir -p "target/corpus/$target" "artifacts/$target" "corpus/$target"
    # shellcheck disable=SC2046
    "$bin_dir/$target" $(libfuzzer_flags "$target") ${FUZZ_ARGS:-} \
        -max_total_time="$seconds" \
        -artifact_prefix="artifacts/$target/" \
        "target/corpus/$target" "corpus/$target"
}

merge() {
    local target=$1
    max_len_bytes "$target" >/dev/null
    mkdir -p "target/corpus/$target" "corpus/$target"
    # A control file left by an earlier merge would make libFuzzer resume
    # that merge, with its list of files that may be gone.
    rm -f "target/merge-$target.txt"
    # Only inputs that reach new code (edges, not hit counts: that keeps
    # the committed corpus about 3x smaller) beyond what corpus/TARGET
    # already reaches are copied in, smallest first.
    # shellcheck disable=SC2046
    "$bin_dir/$target" $(libfuzzer_flags "$target") -merge=1 -use_counters=0 \
        -merge_control_file="target/merge-$target.txt" \
        "corpus/$target" "target/corpus/$target"
}

case ${1:-} in
    build)
        build
        ;;
    smoke)
        seconds=${2:?usage: run.sh smoke SECONDS}
        build
        for target in "${targets[@]}"; do
            echo "=== $target: ${seconds}s"
            run "$target" "$seconds"
        done
        echo "smoke: ${#targets[@]} targets, ${seconds}s each, no crash"
        ;;
    merge)
        which=${2:?usage: run.sh merge TARGET|all}
        if [[ $which == all ]]; then
            for target in "${targets[@]}"; do merge "$target"; done
        else
            merge "$which"
        fi
        ;;
    repro)
        target=${2:?usage: run.sh repro TARGET FILE}
        file=${3:?usage: run.sh repro TARGET FILE}
        max_len_bytes "$target" >/dev/null
        [[ $file == /* ]] || file=$caller_dir/$file
        "$bin_dir/$target" -rss_limit_mb=$rss_limit_mb "$file"
        ;;
    seed)
        # Uninstrumented build (no --target, no RUSTFLAGS): plain Rust code.
        cargo run --locked --release --example seed -- \
            "${OPENRTB_EXAMPLES:-../../shared/openrtb-2.6/jsonschema/examples/bid-requests}"
        ;;
    list)
        printf '%s\n' "${targets[@]}"
        ;;
    "" | -h | --help | help)
        sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        target=$1
        seconds=${2:?usage: run.sh TARGET SECONDS}
        run "$target" "$seconds"
        ;;
esac
