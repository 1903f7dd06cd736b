#!/usr/bin/env bash
# The GPT recipe sweep (issue 13): trains the small config (2 layers, 4 heads, 64 dims, context
# 64, batch 32) for 2,000 steps with seed 0 under each recipe below and prints the final
# validation loss (20 batches, the trainer's default evaluation). Deterministic for a given
# thread count; ~1-2 min per run on 2 cores.
#
#   bash scripts/gpt-recipe-sweep.sh [THREADS] [RECIPE...]    (a RECIPE is a quoted flag list)
#
# Without RECIPEs it runs the grid below. Output: one line per run, `val <loss>  <flags>`.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
shift || true
cargo build -q --release -p aka-trainer
bin=target/release/aka-trainer
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
recipes=("$@")
if [ ${#recipes[@]} -eq 0 ]; then
    recipes=(
        ""
        "--warmup 0 --min-lr-ratio 1 --weight-decay 0.01 --beta2 0.999"
        "--lr 2e-3"
        "--lr 3e-3"
        "--lr 5e-3"
        "--lr 3e-3 --beta2 0.999"
        "--lr 3e-3 --weight-decay 0.01"
        "--lr 3e-3 --min-lr-ratio 0.01"
        "--lr 3e-3 --warmup 50"
        "--lr 5e-3 --warmup 200"
    )
fi
for r in "${recipes[@]}"; do
    # shellcheck disable=SC2086
    "$bin" gpt --steps 2000 --seed 0 --threads "$threads" --no-export --sample-chars 0 \
        --out "$out/run" $r >"$out/log" 2>&1 || { echo "FAILED  $r"; tail -3 "$out/log"; continue; }
    val=$(grep -Eo 'final val loss [0-9.]+' "$out/log" | grep -Eo '[0-9.]+$')
    printf 'val %s  %s\n' "$val" "${r:-(defaults)}"
    rm -rf "$out/run"
done
