#!/usr/bin/env bash
# Regenerates the files the firmware embeds (firmware/models/), from the repository root:
#
#   mnist-cnn.aka          aka-trainer mnist --model cnn --epochs 5   (~53 KB, fits every board)
#   mnist-mlp.aka          aka-trainer mnist --model mlp --epochs 3   (~465 KB, qemu/nrf52840)
#   gpt.aka                aka-trainer gpt --steps 2000 (2 layers, 4 heads, 64 dims, context 64)
#   mnist-test-images.u8   the first N (100) MNIST test images, N x 784 raw u8 pixels
#   mnist-test-labels.u8   their labels, N raw u8
#
# Usage: bash firmware/models/make-models.sh [--images-only]
#   N_IMAGES=100      number of test images
#   RUNS=runs/firmware-models   where the training runs go (checkpoints, summaries)
# Training takes a few minutes on a laptop (CNN ~1.5 min, MLP ~10 s, GPT ~2.5 min on 2 cores).
# Multi-threaded training is not bit-reproducible, so regenerated models differ slightly from
# the committed ones (and so do the firmware's predictions and generated text; the host test
# compares the firmware with aka-core on whatever files are here).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
models="$root/firmware/models"
n=${N_IMAGES:-100}
cd "$root"
runs=${RUNS:-runs/firmware-models}

# Test images: IDX files have a 16-byte (images) / 8-byte (labels) header.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gzip -dc data/mnist/t10k-images-idx3-ubyte.gz >"$tmp/images"
gzip -dc data/mnist/t10k-labels-idx1-ubyte.gz >"$tmp/labels"
dd if="$tmp/images" iflag=skip_bytes,count_bytes bs=64K skip=16 count=$((n * 784)) status=none \
    of="$models/mnist-test-images.u8"
dd if="$tmp/labels" iflag=skip_bytes,count_bytes bs=64K skip=8 count="$n" status=none \
    of="$models/mnist-test-labels.u8"
[[ $(stat -c %s "$models/mnist-test-images.u8") -eq $((n * 784)) ]]
[[ $(stat -c %s "$models/mnist-test-labels.u8") -eq $n ]]
echo "wrote $n test images to $models"
[[ ${1:-} == --images-only ]] && exit 0

cargo run --release -p aka-trainer -- mnist --model cnn --epochs 5 --seed 0 --no-chart \
    --out "$runs/mnist-cnn"
cp "$runs/mnist-cnn/model.aka" "$models/mnist-cnn.aka"

cargo run --release -p aka-trainer -- mnist --model mlp --epochs 3 --seed 0 --no-chart \
    --out "$runs/mnist-mlp"
cp "$runs/mnist-mlp/model.aka" "$models/mnist-mlp.aka"

cargo run --release -p aka-trainer -- gpt --steps 2000 --seed 0 --out "$runs/gpt"
if [[ ! -f $runs/gpt/model.aka ]]; then
    echo "make-models.sh: $runs/gpt/model.aka missing: this aka-trainer gpt does not export int8" >&2
    exit 1
fi
cp "$runs/gpt/model.aka" "$models/gpt.aka"

ls -l "$models"
du -ch "$models"/*.aka "$models"/*.u8 | tail -1
