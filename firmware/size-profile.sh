#!/usr/bin/env bash
# Size vs speed (docs/SIZE.md): builds `mnist` (CNN and MLP) and `gpt` for the `qemu` board in the
# `release` (speed) and `size` profiles, measures each binary's runtime code, runs it in QEMU for
# the instructions per inference / token, checks that both profiles print the same predictions
# (with their score hashes) and the same generated text, and prints the table.
#
#   bash firmware/size-profile.sh            # the release / size table
#   LEVERS=1 bash firmware/size-profile.sh   # also the levers one by one (cumulative), on
#                                            # `mnist` (MLP) and `gpt`
#
# Runtime code = flash − embedded files: `text + data` of `arm-none-eabi-size` (or `llvm-size`),
# i.e. the vector table, .text, .rodata and the .data initializers (everything flashed), minus the
# bytes of the model file and, for `mnist`, the test images and labels, which the binaries embed
# with `include_bytes!` (byte for byte; the model's 4-byte alignment adds at most 3 bytes, counted
# as code). defmt's format strings live in the `.defmt` section, which is not flashed; the logging
# code is counted.
#
# The `size` profile is built with SIZE_FEATURES (default
# `dsp-only,quiet-panic,two-row,compact,small-vector-table,offset-only`, see Cargo.toml; the GPT
# files must then be int8-offset throughout, which `gpt.aka` is). Logs go to $OUT
# (default target/size-profile/). Exits 1 if a run fails or the
# profiles' outputs differ. Needs the tools of install-tools.sh.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never

out=${OUT:-target/size-profile}
models=${AKA_MODEL_DIR:-models}
size_features=${SIZE_FEATURES-dsp-only,quiet-panic,two-row,compact,small-vector-table,offset-only}
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

# outputs LOG: the lines that must be identical across builds (predictions with their score
# hashes, accuracy, generated text and its hash), without timestamps and instruction counts.
outputs() {
    sed -E 's/^[0-9]+ +[A-Z]+ +//' "$1" |
        grep -E '^(img [0-9]+:|accuracy:|text[|+]|generated:)' |
        sed -E 's/, [0-9]+ instructions//' || true
}

failed=0
# run TAG PROFILE FEATURES "VAR=VALUE..." APP ["CARGO ARGS"]: builds APP (mnist-cnn, mnist-mlp or gpt), runs it in
# QEMU, and sets CODE (runtime code), FLASH, EMBEDDED and COUNT (instructions per inference or
# token, empty if not logged). Log: $out/TAG-APP.log, outputs: $out/TAG-APP.outputs.
run() {
    local tag=$1 profile=$2 features=$3 vars=$4 app=$5 more
    read -ra more <<<"${6:-}"
    local bin model pattern embedded
    # Both model variables always set, so that switching apps doesn't rebuild the firmware crate.
    case $app in
        mnist-cnn) bin=mnist model=mnist-cnn.aka pattern="per inference" ;;
        mnist-mlp | gpt) bin=mnist model=mnist-mlp.aka pattern="per inference" ;;
    esac
    if [[ $app == gpt ]]; then
        bin=gpt pattern="per token"
        embedded=(gpt.aka)
    else
        embedded=("$model" mnist-test-images.u8 mnist-test-labels.u8)
    fi
    echo "== $tag: $app (profile $profile, features '${features}', ${vars:-no env})" >&2
    local args=(--profile "$profile" --bin "$bin" "${more[@]}")
    [[ -n $features ]] && args+=(--features "$features")
    # shellcheck disable=SC2086 # VAR=VALUE words
    env AKA_MNIST_MODEL="$model" AKA_GPT_MODEL=gpt.aka $vars cargo build -q "${args[@]}"
    local elf=target/thumbv7em-none-eabihf/$profile/$bin
    local log=$out/$tag-$app.log
    FLASH=$(flash "$elf")
    EMBEDDED=$(bytes "${embedded[@]}")
    CODE=$((FLASH - EMBEDDED))
    if ! ./run-qemu.sh "$elf" >"$log" 2>&1; then
        echo "FAILED: $tag $app in QEMU (log: $log)" >&2
        failed=1
    fi
    COUNT=$(grep -oE "$pattern: [0-9]+ instructions" "$log" | grep -oE '[0-9]+' | head -1 || true)
    outputs "$log" >"$out/$tag-$app.outputs"
}

# same TAG APP: "yes" if TAG printed what `release` printed for APP ("no log" without outputs).
same() {
    local ref=$out/release-$2.outputs got=$out/$1-$2.outputs
    if [[ ! -s $got ]]; then
        echo "no log"
    elif diff -q "$ref" "$got" >/dev/null; then
        echo "yes"
    else
        echo "NO"
    fi
}

apps=(mnist-cnn mnist-mlp gpt)
rows=()
for p in release size; do
    features=
    [[ $p == size ]] && features=$size_features
    for app in "${apps[@]}"; do
        run "$p" "$p" "$features" "" "$app"
        rows+=("$(printf '| `%s` | %s | %s | %s | %s | **%s** | %s |' \
            "$app" "$p" "${features:-(default)}" "$FLASH" "$EMBEDDED" "$CODE" "${COUNT:-?}")")
    done
done

# The smallest `mnist`: the MLP with the Sequential runtime's Linear + ReLU kernels only.
run size-mlp size "$size_features,linear-only" "" mnist-mlp
rows+=("$(printf '| `%s` | %s | %s | %s | %s | **%s** | %s |' \
    mnist-mlp size "$size_features,linear-only" "$FLASH" "$EMBEDDED" "$CODE" "${COUNT:-?}")")
if [[ $(same size-mlp mnist-mlp) != yes ]]; then
    echo "FAILED: mnist-mlp with linear-only prints different results" >&2
    failed=1
fi

# Issue 13 part 5's goals are for builds without logging (as TFLite Micro's figures are):
# DEFMT_LOG=off, and `terse-errors`, since nothing prints an error's text then. They print
# nothing, so they have no instruction count and no outputs to compare.
for app in mnist-mlp gpt; do
    features=$size_features,terse-errors
    [[ $app == mnist-mlp ]] && features+=,linear-only
    run "nolog" size "$features" "DEFMT_LOG=off" "$app"
    rows+=("$(printf '| `%s` | %s | %s | %s | %s | **%s** | %s |' \
        "$app" "size, DEFMT_LOG=off" "$features" "$FLASH" "$EMBEDDED" "$CODE" "-")")
done

# Bit-exactness: the size profile prints what release prints.
for app in "${apps[@]}"; do
    s=$(same size "$app")
    echo "size vs release, $app: same outputs: $s ($(wc -l <"$out/release-$app.outputs") lines)" >&2
    [[ $s == yes ]] || failed=1
done

echo "| binary | profile | features | flash | embedded model + data | runtime code | instructions per inference / token |"
echo "|---|---|---|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"

if [[ -n ${LEVERS:-} ]]; then
    # One lever at a time, cumulative (each row changes one thing from the row above it, except
    # the two aka-core rows, which both change the "z everywhere" row above them):
    # NAME|PROFILE|FEATURES|VARS|CARGO ARGS. Cargo reads CARGO_PROFILE_SIZE_* and --config over
    # Cargo.toml, an exported DEFMT_LOG over .cargo/config.toml.
    z='--config profile.size.package.aka-core.opt-level="z"'
    all=dsp-only,quiet-panic,linear-only,two-row,compact,small-vector-table,offset-only
    levers=(
        "release: opt-level 3, fat LTO, 1 CGU|release|||"
        "opt-level s everywhere, fat LTO, 1 CGU|size||CARGO_PROFILE_SIZE_OPT_LEVEL=s|--config profile.size.package.aka-core.opt-level=\"s\""
        "opt-level z everywhere, no LTO|size||CARGO_PROFILE_SIZE_LTO=false|$z"
        "opt-level z everywhere, thin LTO|size||CARGO_PROFILE_SIZE_LTO=thin|$z"
        "opt-level z everywhere, fat LTO, 16 CGUs|size||CARGO_PROFILE_SIZE_CODEGEN_UNITS=16|$z"
        "opt-level z everywhere, fat LTO, 1 CGU|size|||$z"
        "aka-core at opt-level 3, the rest z|size|||--config profile.size.package.aka-core.opt-level=3"
        "aka-core at opt-level 2, the rest z (profile size)|size|||"
        "+ dsp-only|size|dsp-only||"
        "+ quiet-panic (the size profile before issue 13 part 5)|size|dsp-only,quiet-panic||"
        "+ linear-only (Sequential: int8 Linear + ReLU kernels only)|size|dsp-only,quiet-panic,linear-only||"
        "+ two-row (no three-row FC kernels)|size|dsp-only,quiet-panic,linear-only,two-row||"
        "+ compact (smaller GPT, sampling and loader code paths)|size|dsp-only,quiet-panic,linear-only,two-row,compact||"
        "+ small-vector-table (1 device interrupt vector)|size|${all%,offset-only}||"
        "+ offset-only (GPT: the int8-offset FC kernel only)|size|$all||"
        "+ DEFMT_LOG=warn (no info lines)|size|$all|DEFMT_LOG=warn|"
        "+ DEFMT_LOG=off (no logging at all)|size|$all|DEFMT_LOG=off|"
        "+ terse-errors (no error texts; the goals' builds)|size|$all,terse-errors|DEFMT_LOG=off|"
    )
    lrows=()
    i=0
    for lever in "${levers[@]}"; do
        IFS='|' read -r name profile features vars args <<<"$lever"
        i=$((i + 1))
        run "lever$i" "$profile" "$features" "$vars" mnist-mlp "$args"
        mc=$CODE mi=${COUNT:--} ms=$(same "lever$i" mnist-mlp)
        run "lever$i" "$profile" "$features" "$vars" gpt "$args"
        lrows+=("$(printf '| %s | %s | %s | %s | %s | %s / %s |' \
            "$name" "$mc" "$CODE" "$mi" "${COUNT:--}" "$ms" "$(same "lever$i" gpt)")")
    done
    echo
    echo "| lever | \`mnist\` (MLP) runtime code | \`gpt\` runtime code | \`mnist\` instructions / inference | \`gpt\` instructions / token | same outputs as release (mnist / gpt) |"
    echo "|---|---:|---:|---:|---:|---|"
    printf '%s\n' "${lrows[@]}"
fi
exit "$failed"
