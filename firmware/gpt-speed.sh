#!/usr/bin/env bash
# GPT decode speed in QEMU (mps2-an386, -icount shift=0: exact instruction counts): runs the
# `gpt_speed` binary (src/bin/gpt_speed.rs) once per model and prints a Markdown table with
# instructions per token (one full context, positions 0..block_size-1, forward + sampling),
# per weight-MAC, tokens/s at 64 MHz (nRF52840) and 100 MHz (STM32F411) as if one instruction
# took one cycle (an upper bound: QEMU counts instructions, not cycles), and the per-step profile.
#
#   bash firmware/gpt-speed.sh                 # models/gpt.aka + the flagships (or flagship-shaped)
#   bash firmware/gpt-speed.sh A.aka B.aka     # these files
#   NO_FLAGSHIP=1 bash firmware/gpt-speed.sh   # models/gpt.aka only
#
# Without the committed flagships (models/gpt-nrf52840.aka, gpt-stm32f411.aka), flagship-shaped
# models (the issue's reference shape: 4 layers x 128 dims, 4 heads, context
# 128, MLP 512, 65 chars) are trained for 20 steps (weights do not matter for speed) into a
# temporary directory with `aka-trainer gpt`: int8, and int4 when the trainer has `--weights`.
# Needs the tools of install-tools.sh; about 2 minutes of QEMU per flagship model.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

models=("$@")
if [[ ${#models[@]} -eq 0 ]]; then
    models=("$PWD/models/gpt.aka")
    if [[ -z ${NO_FLAGSHIP:-} && -f models/gpt-nrf52840.aka && -f models/gpt-stm32f411.aka ]]; then
        # The committed flagships (models/make-models.sh --flagships).
        models+=("$PWD/models/gpt-nrf52840.aka" "$PWD/models/gpt-stm32f411.aka")
    elif [[ -z ${NO_FLAGSHIP:-} ]]; then
        # From the workspace root: firmware/.cargo/config.toml would select the Cortex-M target.
        trainer() { (cd .. && cargo run -q --release -p aka-trainer -- "$@"); }
        flag=(gpt --layers 4 --dim 128 --heads 4 --block 128 --steps 20 --eval-batches 2
            --eval-interval 20 --sample-chars 0)
        echo "gpt-speed.sh: training the flagship-shaped int8 model (20 steps)" >&2
        trainer "${flag[@]}" --out "$tmp/flag-int8" </dev/null >"$tmp/train.log" 2>&1 ||
            { cat "$tmp/train.log" >&2; exit 1; }
        cp "$tmp/flag-int8/model.aka" "$tmp/flagship-int8.aka"
        models+=("$tmp/flagship-int8.aka")
        if trainer gpt --help </dev/null 2>/dev/null | grep -q -- '--weights'; then
            echo "gpt-speed.sh: training the flagship-shaped int4 model (20 steps)" >&2
            trainer "${flag[@]}" --weights int4 --out "$tmp/flag-int4" </dev/null \
                >"$tmp/train.log" 2>&1 || { cat "$tmp/train.log" >&2; exit 1; }
            cp "$tmp/flag-int4/model.aka" "$tmp/flagship-int4.aka"
            models+=("$tmp/flagship-int4.aka")
        else
            echo "gpt-speed.sh: this aka-trainer has no --weights: no int4 flagship" >&2
        fi
    fi
fi

# The build wants the MNIST data next to the model (build.rs checks AKA_MODEL_DIR).
dir=$tmp/models
mkdir -p "$dir"
for f in mnist-test-images.u8 mnist-test-labels.u8 mnist-cnn.aka; do
    ln -sf "$PWD/models/$f" "$dir/$f"
done

echo "| model | weights | weight-MACs per token | instructions per token | per weight-MAC | tokens/s at 64 MHz (upper bound) | tokens/s at 100 MHz (upper bound) |"
echo "|---|---|---:|---:|---:|---:|---:|"
profiles=""
for m in "${models[@]}"; do
    name=$(basename "$m")
    cp "$m" "$dir/$name"
    log=$tmp/run.log
    if ! AKA_MODEL_DIR=$dir AKA_GPT_MODEL=$name cargo run -q --release --bin gpt_speed \
        </dev/null >"$log" 2>&1; then
        cat "$log" >&2
        echo "gpt-speed.sh: gpt_speed failed on $m" >&2
        exit 1
    fi
    shape=$(grep -o 'gpt_speed on .*' "$log" | sed -e 's/^gpt_speed on [a-z0-9]*: [^,]*, //' -e 's/, weights .*//')
    weights=$(grep -o 'weights Some([A-Za-z0-9]*)' "$log" | sed 's/weights Some(\(.*\))/\1/')
    total=$(grep -o 'SPEED|total|.*' "$log")
    IFS='|' read -r _ _ macs per steps <<<"$total"
    awk -v n="$name ($shape)" -v w="$weights" -v m="$macs" -v p="$per" 'BEGIN {
        printf "| %s | %s | %d | **%d** | **%.2f** | %.1f | %.1f |\n", n, w, m, p, p / m, 64e6 / p, 100e6 / p
    }'
    prof=$(grep -o 'SPEED|[a-z_]*|[0-9]*$' "$log" | grep -v '|total|\|fc_alone' |
        awk -F'|' -v p="$per" '{ printf "%s %d (%.1f %%), ", $2, $3, 100 * $3 / p }')
    fc=$(grep -o 'SPEED|fc_alone|[0-9]*' "$log" | cut -d'|' -f3)
    fcline=$(awk -v f="$fc" -v m="$macs" -v p="$per" 'BEGIN {
        printf "fully connected kernel alone %d (%.2f per weight-MAC), everything else %d (%.2f per weight-MAC)", f, f / m, p - f, (p - f) / m
    }')
    profiles+="* $name: ${prof%, } (mean of $steps steps; $(grep -o 'logits fnv1a 0x[0-9a-f]*' "$log")); $fcline"$'\n'
done
echo
echo "Per-step profile (instructions per token, from a second pass with a counter read at each step):"
echo
printf '%s' "$profiles"
