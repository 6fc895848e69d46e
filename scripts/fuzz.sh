#!/usr/bin/env bash
# Runs every libFuzzer target of fuzz/ for a bounded time (docs/hostile-input.md).
#
#   scripts/fuzz.sh [seconds per target, default 20] [target ...]
#
# cargo-fuzz is installed once from crates.io into ~/.cache/erp-toolkit/cargo-bin. With a nightly
# toolchain the targets build with AddressSanitizer (cargo +nightly fuzz); without one, on
# stable with RUSTC_BOOTSTRAP=1 and no sanitizer (-s none): coverage-guided all the same, but
# memory errors in C code are not caught. Corpora grow in fuzz/corpus/<target> (keep only what
# `cargo fuzz cmin` leaves when committing); a crash is written to fuzz/artifacts/<target> and
# fails the run: turn it into a regression test before fixing it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-20}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(ingest_request payload_conversion mapping_configuration jsonata_evaluation
           webhook_configuration record_decoding)
fi

root="$HOME/.cache/erp-toolkit/cargo-bin"
export PATH="$root/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked --root "$root" >/dev/null
fi
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/erp-toolkit/fuzz-target}"

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
  sanitizer=()
  echo "fuzzing on nightly with AddressSanitizer"
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
  sanitizer=(-s none)
  echo "fuzzing on stable (RUSTC_BOOTSTRAP=1), no sanitizer"
fi

for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  started=$(date +%s)
  # -rss_limit_mb: a run over 2 GB is a finding too; -timeout: one input over 10 s is a hang.
  "${fuzz[@]}" run "${sanitizer[@]}" "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    2> "/tmp/fuzz-$target.log" || {
      tail -40 "/tmp/fuzz-$target.log"
      echo "fuzz target $target found a crash: see fuzz/artifacts/$target" >&2
      exit 1
    }
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "/tmp/fuzz-$target.log" | grep -o '[0-9]*$' || echo "?")
  echo "$target: $(( $(date +%s) - started )) s, $runs executions, corpus $(ls "corpus/$target" | wc -l) files"
done
