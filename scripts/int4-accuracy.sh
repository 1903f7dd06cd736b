#!/usr/bin/env bash
# The int4 accuracy table of docs/RESULTS.md ("int4 weights (issue 12)"): trains each model with
# `aka-trainer` (release build) and exports it with int8 and with int4 weights; every quantized
# figure is the exported file run by aka-core on the host (`export.quantized_accuracy` /
# `export.quantized_val_loss` in summary.json).
#
#   bash scripts/int4-accuracy.sh [THREADS] [PART...]     PART: mlp cnn gpt gpt-nano
#                                                         (default: mlp cnn gpt)
#
# MNIST: test accuracy (10,000 images), MLP 1 and 5 epochs and CNN 5 epochs, seeds 0-2, float /
# int8 / int4 (PTQ), and the file sizes. GPT (`aka-trainer gpt --steps 2000 --seed 0`, the
# small config): validation loss on the exporter's batches (4 x 8 sequences of 64, seed 0) of
# the float model, int8, int4 PTQ, and int4 after `--qat-steps 200` (QAT), also with `wk` kept
# int8; gpt-nano: the same for nanoGPT's CPU config (4 layers, 4 heads, 128 dims, batch 12).
# Deterministic for a given thread count. ~25 min on 2 cores (gpt-nano ~10 min more).
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
shift || true
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(mlp cnn gpt)
cargo build -q --release -p aka-trainer
bin=target/release/aka-trainer
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
echo "runs in $out (threads $threads)"

# json FILE EXPR: a Python expression over the summary `d`.
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

mnist() { # model epochs
    echo
    echo "MNIST $1, $2 epoch(s): float / int8 / int4 accuracy (%), file bytes int8 / int4"
    echo "| seed | float | int8 | int4 | int4 - float | int8 file | int4 file | ratio |"
    echo "|---|---|---|---|---|---|---|---|"
    for seed in 0 1 2; do
        for w in int8 int4; do
            "$bin" mnist --model "$1" --epochs "$2" --seed "$seed" --threads "$threads" \
                --no-chart --weights "$w" --out "$out/$1-e$2-s$seed-$w" >"$out/$1-e$2-s$seed-$w.log"
        done
        a="$out/$1-e$2-s$seed-int8/summary.json"
        b="$out/$1-e$2-s$seed-int4/summary.json"
        f=$(json "$a" "d['export']['float_accuracy']")
        q8=$(json "$a" "d['export']['quantized_accuracy']")
        q4=$(json "$b" "d['export']['quantized_accuracy']")
        s8=$(json "$a" "d['export']['file_bytes']")
        s4=$(json "$b" "d['export']['file_bytes']")
        python3 -c "import sys; f,q8,q4,s8,s4=map(float,sys.argv[1:]); print(f'| $seed | {f:.2f} | {q8:.2f} | {q4:.2f} | {q4-f:+.2f} | {s8:.0f} | {s4:.0f} | {s4/s8:.3f} |')" \
            "$f" "$q8" "$q4" "$s8" "$s4"
    done
}

gpt() { # name flags...
    local name=$1
    shift
    echo
    echo "GPT $name (\`aka-trainer gpt --steps 2000 --seed 0 $*\`): validation loss (exporter's batches)"
    echo "| weights | float | quantized PTQ | vs float | after --qat-steps 200 | vs float |"
    echo "|---|---|---|---|---|---|"
    "$bin" gpt --steps 2000 --seed 0 --threads "$threads" --sample-chars 0 --weights int8 "$@" \
        --out "$out/$name-int8" >"$out/$name-int8.log"
    json "$out/$name-int8/summary.json" \
        "'| int8 | %.4f | %.4f | %+.2f%% | | |' % (d['export']['float_val_loss'], d['export']['quantized_val_loss'], 100*(d['export']['quantized_val_loss']/d['export']['float_val_loss']-1))"
    for rule in "" "wk"; do
        [ "$name" != small ] && [ -n "$rule" ] && continue
        run="$name-int4${rule:+-$rule}"
        "$bin" gpt --steps 2000 --seed 0 --threads "$threads" --sample-chars 0 --weights int4 \
            ${rule:+--int8-matrices $rule} --qat-steps 200 "$@" --out "$out/$run" >"$out/$run.log"
        json "$out/$run/summary.json" \
            "'| int4${rule:+ ($rule int8)} | %.4f | %.4f | %+.2f%% | %.4f | %+.2f%% |' % (d['qat']['ptq_float_val_loss'], d['qat']['ptq_quantized_val_loss'], 100*(d['qat']['ptq_quantized_val_loss']/d['qat']['ptq_float_val_loss']-1), d['qat']['qat_quantized_val_loss'], 100*(d['qat']['qat_quantized_val_loss']/d['qat']['ptq_float_val_loss']-1))"
    done
}

for p in "${parts[@]}"; do
    case "$p" in
    mlp) mnist mlp 1; mnist mlp 5 ;;
    cnn) mnist cnn 5 ;;
    gpt) gpt small ;;
    gpt-nano) gpt nano --layers 4 --heads 4 --dim 128 --block 64 --batch-size 12 ;;
    *) echo "unknown part $p (mlp cnn gpt gpt-nano)" >&2; exit 2 ;;
    esac
done
