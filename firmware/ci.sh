#!/usr/bin/env bash
# Firmware checks: format, lints and release builds for every board (with sizes; the MNIST MLP
# variant where it fits, the int4 MLP on the STM32F411), then QEMU runs: `hello` (twice:
# instruction counts must be identical), the `counter` self-test, `dsp_check`, the `mnist` (CNN,
# MLP, int4 MLP, profile) and `gpt` (int8, int4, the two flagships with their boards' memory
# limits) binaries, and
# the exit codes of the `fault` binary. Needs the tools of install-tools.sh.
#
# Rewrites budgets.json (commit it when it changes): per board, for the `mnist` (default model)
# and `gpt` binaries, the flash and static RAM from the section sizes, the runtime code (flash
# minus the embedded model and data files), the statics that hold the model's state (the
# `ARENA` / `BUFFERS` symbols), and the stack high-water mark the binary logs when it runs in
# QEMU. `aka inspect --board` reads it.
set -uo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never

passed=0
failed=0
# check NAME EXPECTED_EXIT_CODE COMMAND...
check() {
    local name=$1 expected=$2
    shift 2
    echo "== $name"
    "$@"
    local rc=$?
    if [[ $rc -eq $expected ]]; then
        echo "ok: $name (exit $rc)"
        passed=$((passed + 1))
    else
        echo "FAILED: $name (exit $rc, expected $expected)"
        failed=$((failed + 1))
    fi
}

# size/nm: GNU binutils for Arm, or LLVM's (same output formats).
size_tool=$(command -v arm-none-eabi-size || command -v llvm-size || true)
nm_tool=$(command -v arm-none-eabi-nm || command -v llvm-nm || true)
elf_dir=target/thumbv7em-none-eabihf/release
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
declare -A budget

# section_sum ELF SECTION... : the summed sizes of those sections (`size -A`).
section_sum() {
    local elf=$1
    shift
    "$size_tool" -A "$elf" | awk -v want=" $* " '
        index(want, " " $1 " ") { total += $2 } END { print total + 0 }'
}

# record_sizes BOARD BIN MODEL DATA_FILE... : the sizes of the just-built BIN for BOARD into
# `budget[BOARD/BIN/field]`. Flash is what is loaded (vector table, code, read-only data, the
# initial values of .data); static RAM is .data + .bss + .uninit.
record_sizes() {
    local board=$1 bin=$2 model=$3
    shift 3
    local elf=$elf_dir/$bin key=$board/$bin
    [[ -n $size_tool && -n $nm_tool && -f $elf ]] || return 0
    local flash ram model_bytes data_bytes=0 buffers f
    flash=$(section_sum "$elf" .vector_table .text .rodata .data)
    ram=$(section_sum "$elf" .data .bss .uninit)
    model_bytes=$(stat -c %s "models/$model")
    for f in "$@"; do
        data_bytes=$((data_bytes + $(stat -c %s "models/$f")))
    done
    # The statics the app sizes for the model (the MNIST arena, the GPT buffers).
    buffers=0
    local _addr size _kind name
    while read -r _addr size _kind name; do
        if [[ $name =~ ^aka_firmware::app::[a-z]+::(ARENA|BUFFERS)$ ]]; then
            buffers=$((buffers + 16#$size))
        fi
    done < <("$nm_tool" -S -C "$elf")
    budget[$key/model]=$model
    budget[$key/flash]=$flash
    budget[$key/model_bytes]=$model_bytes
    budget[$key/data_bytes]=$data_bytes
    budget[$key/code]=$((flash - model_bytes - data_bytes))
    budget[$key/ram]=$ram
    budget[$key/buffers]=$buffers
    echo "budget $key: flash $flash = code ${budget[$key/code]} + model $model_bytes + data $data_bytes; static RAM $ram (model buffers $buffers)"
}

# logged NAME COMMAND... : runs COMMAND, its output also kept in $logs/NAME.log.
logged() {
    local name=$1
    shift
    "$@" 2>&1 | tee "$logs/$name.log"
    return "${PIPESTATUS[0]}"
}

# stack_of NAME : the high-water mark the run NAME logged (`stack high-water: N bytes of M`).
stack_of() {
    sed -n 's/.*stack high-water: \([0-9]*\) bytes of .*/\1/p' "$logs/$1.log" 2>/dev/null | tail -1
}

# stack_max NAME... : the deepest high-water mark of the runs NAME... (empty if one logged none).
stack_max() {
    local max=0 s name
    for name in "$@"; do
        s=$(stack_of "$name")
        [[ -z $s ]] && return 0
        ((s > max)) && max=$s
    done
    echo "$max"
}

check "cargo fmt" 0 cargo fmt --check
for board in qemu nrf52840 stm32f411; do
    features=(--no-default-features --features "$board")
    check "clippy $board" 0 cargo clippy --release "${features[@]}" --all-targets -- -D warnings
    check "build $board" 0 cargo build --release "${features[@]}"
    if command -v arm-none-eabi-size >/dev/null; then
        arm-none-eabi-size target/thumbv7em-none-eabihf/release/{hello,mnist,gpt,chat}
    fi
    record_sizes "$board" mnist mnist-cnn.aka mnist-test-images.u8 mnist-test-labels.u8
    record_sizes "$board" gpt gpt.aka
    # The MNIST MLP (~465 KB) instead of the default CNN: fits qemu and nrf52840, not the
    # stm32f411's 512 KiB next to the test images (that board runs the CNN; build.rs refuses
    # the MLP there, checked below).
    if [[ $board != stm32f411 ]]; then
        check "build $board mnist (MLP)" 0 \
            env AKA_MNIST_MODEL=mnist-mlp.aka cargo build --release "${features[@]}" --bin mnist
        if command -v arm-none-eabi-size >/dev/null; then
            arm-none-eabi-size target/thumbv7em-none-eabihf/release/mnist
        fi
    fi
done

# Bad input: a model too big for the board fails the build in build.rs, with the numbers (the
# MLP next to the test images is over the STM32F411's 512 KiB of flash), not in the linker.
too_big() {
    local out
    out=$(AKA_MNIST_MODEL=mnist-mlp.aka cargo build --release --no-default-features \
        --features stm32f411 --bin mnist 2>&1)
    local rc=$?
    echo "$out" | grep -A2 "does not fit"
    [[ $rc -ne 0 ]] && grep -q "does not fit the stm32f411 board" <<<"$out" &&
        grep -q "flash: [0-9]* bytes (runtime code [0-9]* + model [0-9]* + data [0-9]*) > 524288 bytes, over by [0-9]*" <<<"$out"
}
check "stm32f411 mnist (MLP) too big: build.rs says by how much" 0 too_big
# The same MLP with int4 weights (236 KB) fits the STM32F411 next to the test images.
check "build stm32f411 mnist (int4 MLP)" 0 env AKA_MNIST_MODEL=mnist-mlp-int4.aka \
    cargo build --release --no-default-features --features stm32f411 --bin mnist

check "hello" 0 cargo run --release --bin hello
hello_twice() {
    diff <(cargo run -q --release --bin hello 2>/dev/null) \
        <(cargo run -q --release --bin hello 2>/dev/null)
}
check "hello deterministic" 0 hello_twice
check "counter self-test" 0 cargo run --release --bin counter
# The Cortex-M4 DSP kernels against the portable reference kernels: bit-identical on random cases.
check "dsp_check" 0 cargo run --release --bin dsp_check
# The models (src/app): MNIST CNN and MLP on the embedded test images, the tiny GPT. The host
# comparison (device == aka-core on the host) is `cargo test -p aka-tests --test device -- --ignored`.
check "mnist (CNN)" 0 logged mnist cargo run --release --bin mnist
check "mnist (MLP)" 0 logged mnist-mlp env AKA_MNIST_MODEL=mnist-mlp.aka cargo run --release --bin mnist
check "mnist (int4 MLP)" 0 logged mnist-int4 \
    env AKA_MNIST_MODEL=mnist-mlp-int4.aka cargo run --release --bin mnist
check "mnist (CNN, per-layer profile)" 0 cargo run --release --features profile --bin mnist
check "gpt" 0 logged gpt cargo run --release --bin gpt
check "gpt (int4)" 0 logged gpt-int4 env AKA_GPT_MODEL=gpt-int4.aka cargo run --release --bin gpt
# The flagships (issue 13): each board's best GPT, built for its board, and run in QEMU linked
# with that board's flash and RAM lengths (AKA_QEMU_LIMITS), 300 tokens.
for flagship in nrf52840 stm32f411; do
    check "build $flagship gpt (flagship gpt-$flagship.aka)" 0 env AKA_GPT_MODEL="gpt-$flagship.aka" \
        cargo build --release --no-default-features --features "$flagship" --bin gpt
    check "gpt flagship gpt-$flagship.aka in QEMU with $flagship limits" 0 \
        env AKA_QEMU_LIMITS="$flagship" AKA_GPT_MODEL="gpt-$flagship.aka" AKA_GPT_TOKENS=300 \
        cargo run --release --bin gpt
done
# The decode-speed binary keeps building (firmware/gpt-speed.sh measures with it).
check "build gpt_speed" 0 cargo build --release --bin gpt_speed
for fault in panic:101 defmt-panic:101 udf:102 bus:102 overflow:102; do
    check "fault ${fault%%:*}" "${fault##*:}" env AKA_FAULT="${fault%%:*}" cargo run --release --bin fault
done

# budgets.json, if every number was measured: the stack high-water of the qemu runs stands for
# every board (same app code; the hardware boards are not run here). Per app, the deepest of its
# runs over the committed models: the stack depends on the model's kernels (the GPT's int4
# products go deeper than its int8-offset ones), and a budget must not under-count it.
write_budgets() {
    local stack_mnist stack_gpt board bin key first_board=1 first_bin
    stack_mnist=$(stack_max mnist mnist-mlp mnist-int4)
    stack_gpt=$(stack_max gpt gpt-int4)
    for board in qemu nrf52840 stm32f411; do
        for bin in mnist gpt; do
            if [[ -z ${budget[$board/$bin/flash]:-} ]]; then
                echo "budgets.json not rewritten: no sizes for $board/$bin (size/nm tools missing or the build failed)"
                return 1
            fi
        done
    done
    if [[ -z $stack_mnist || -z $stack_gpt ]]; then
        echo "budgets.json not rewritten: the mnist or gpt run logged no stack high-water"
        return 1
    fi
    {
        echo '{'
        echo '  "about": "Written by firmware/ci.sh: per board, the mnist (default model) and gpt firmware. code_bytes = flash_bytes - model_bytes - data_bytes; static_ram_bytes = .data + .bss + .uninit, of which model_buffer_bytes hold the model state (ARENA / BUFFERS); stack_high_water_bytes measured by stack painting in QEMU (the qemu build; per app the deepest of its runs over the committed models) and used for every board.",'
        echo '  "stack_measured_on": "qemu",'
        echo '  "boards": {'
        for board in qemu nrf52840 stm32f411; do
            [[ $first_board -eq 1 ]] || echo '    },'
            first_board=0
            echo "    \"$board\": {"
            first_bin=1
            for bin in mnist gpt; do
                key=$board/$bin
                [[ $first_bin -eq 1 ]] || echo '      },'
                first_bin=0
                local stack=$stack_mnist
                [[ $bin == gpt ]] && stack=$stack_gpt
                echo "      \"$bin\": {"
                echo "        \"model\": \"${budget[$key/model]}\","
                echo "        \"flash_bytes\": ${budget[$key/flash]},"
                echo "        \"model_bytes\": ${budget[$key/model_bytes]},"
                echo "        \"data_bytes\": ${budget[$key/data_bytes]},"
                echo "        \"code_bytes\": ${budget[$key/code]},"
                echo "        \"static_ram_bytes\": ${budget[$key/ram]},"
                echo "        \"model_buffer_bytes\": ${budget[$key/buffers]},"
                echo "        \"other_static_ram_bytes\": $((budget[$key/ram] - budget[$key/buffers])),"
                echo "        \"stack_high_water_bytes\": $stack"
            done
            echo '      }'
        done
        echo '    }'
        echo '  }'
        echo '}'
    } >budgets.json.tmp
    # Left untouched when unchanged: build.rs reads it, and a new mtime would rebuild the crate.
    if cmp -s budgets.json.tmp budgets.json; then
        rm budgets.json.tmp
        echo "budgets.json unchanged (stack high-water: mnist $stack_mnist bytes, gpt $stack_gpt bytes)"
    else
        mv budgets.json.tmp budgets.json
        echo "budgets.json written (stack high-water: mnist $stack_mnist bytes, gpt $stack_gpt bytes)"
    fi
}
check "budgets.json" 0 write_budgets

echo "firmware: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
