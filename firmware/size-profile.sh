#!/usr/bin/env bash
# Size vs speed: builds `mnist` (CNN and MLP) and `gpt` for the `qemu` board in the `release`
# (speed) and `size` profiles, measures each binary's runtime code, runs it in QEMU for the
# instructions per inference / token, checks that both profiles print the same predictions and
# the same generated text, and prints the table of docs/SIZE.md.
#
#   bash firmware/size-profile.sh                  # release and size
#   PROFILES="size" bash firmware/size-profile.sh  # one profile
#
# Runtime code = flash − embedded files: `text + data` of `arm-none-eabi-size` (or `llvm-size`)
# (vector table, .text, .rodata and the .data initializers: everything flashed) minus the bytes of
# the model file and, for `mnist`, the test images and labels, which the binaries embed with
# `include_bytes!` (each copy is the file byte for byte; the model's 4-byte alignment adds at most
# 3 bytes, counted as code). The defmt format strings are in the non-flashed `.defmt` section and
# are not counted; the logging's *code* is (see docs/SIZE.md for what it costs).
#
# Extra cargo arguments for every build (e.g. `--features ...`) go in CARGO_ARGS. Logs and
# binaries' sizes are written to $OUT (default target/size-profile/). Exits 1 if a run fails or
# the profiles' outputs differ. Needs the tools of install-tools.sh.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never

profiles=(${PROFILES:-release size})
out=${OUT:-target/size-profile}
models=${AKA_MODEL_DIR:-models}
extra=(${CARGO_ARGS:-})
mkdir -p "$out"

if command -v arm-none-eabi-size >/dev/null; then
    size_tool=arm-none-eabi-size
elif command -v llvm-size >/dev/null; then
    size_tool=llvm-size
else
    echo "size-profile.sh: needs arm-none-eabi-size or llvm-size" >&2
    exit 127
fi

# flash ELF: text + data (Berkeley format) = everything that goes to flash.
flash() {
    "$size_tool" -B "$1" | awk 'NR == 2 { print $1 + $2 }'
}

# bytes FILE...: total size of the files embedded in a binary.
bytes() {
    local total=0 f
    for f in "$@"; do
        total=$((total + $(stat -c %s "$models/$f")))
    done
    echo "$total"
}

# outputs LOG: the lines that must be identical across profiles (predictions with their score
# hashes, accuracy, generated text and its hash), without timestamps and instruction counts.
outputs() {
    sed -E 's/^[0-9]+ +[A-Z]+ +//' "$1" |
        grep -E '^(img [0-9]+:|accuracy:|text[|+]|generated:)' |
        sed -E 's/, [0-9]+ instructions//'
}

failed=0
rows=()
# measure PROFILE NAME BIN "VAR=VALUE..." LOG_PATTERN EMBEDDED_FILES...
measure() {
    local profile=$1 name=$2 bin=$3 model_env=$4 pattern=$5
    shift 5
    local embedded=("$@")
    echo "== $profile: $name" >&2
    env $model_env cargo build -q --profile "$profile" "${extra[@]}" --bin "$bin"
    local elf=target/thumbv7em-none-eabihf/$profile/$bin
    local log=$out/$profile-$name.log
    local fl emb code
    fl=$(flash "$elf")
    emb=$(bytes "${embedded[@]}")
    code=$((fl - emb))
    if ! ./run-qemu.sh "$elf" >"$log" 2>&1; then
        echo "FAILED: $profile $name in QEMU (log: $log)" >&2
        failed=1
    fi
    local count
    count=$(grep -oE "$pattern: [0-9]+ instructions" "$log" | grep -oE '[0-9]+' | head -1 || true)
    outputs "$log" >"$out/$profile-$name.outputs"
    rows+=("$(printf '| `%s` | %s | %s | %s | %s | %s |' "$name" "$profile" "$fl" "$emb" "$code" "${count:-?}")")
}

for p in "${profiles[@]}"; do
    measure "$p" "mnist (CNN)" mnist AKA_MNIST_MODEL=mnist-cnn.aka "per inference" \
        mnist-cnn.aka mnist-test-images.u8 mnist-test-labels.u8
    measure "$p" "mnist (MLP)" mnist AKA_MNIST_MODEL=mnist-mlp.aka "per inference" \
        mnist-mlp.aka mnist-test-images.u8 mnist-test-labels.u8
    # (The MLP's AKA_MNIST_MODEL kept: changing it would rebuild the firmware crate.)
    measure "$p" "gpt" gpt "AKA_MNIST_MODEL=mnist-mlp.aka AKA_GPT_MODEL=gpt.aka" "per token" gpt.aka
done

# Bit-exactness: every profile prints what the first one prints.
for name in "mnist (CNN)" "mnist (MLP)" "gpt"; do
    first=$out/${profiles[0]}-$name.outputs
    if [[ ! -s $first ]]; then
        echo "FAILED: no outputs in $first" >&2
        failed=1
        continue
    fi
    for p in "${profiles[@]:1}"; do
        if diff -q "$first" "$out/$p-$name.outputs" >/dev/null; then
            echo "same outputs: $name, ${profiles[0]} and $p ($(wc -l <"$first") lines)" >&2
        else
            echo "FAILED: $name prints different results in ${profiles[0]} and $p:" >&2
            diff "$first" "$out/$p-$name.outputs" | head -5 >&2
            failed=1
        fi
    done
done

echo "| binary | profile | flash (bytes) | embedded model + data | runtime code | instructions per inference / token |"
echo "|---|---|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
exit "$failed"
