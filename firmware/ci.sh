#!/usr/bin/env bash
# Firmware checks: format, lints and release builds for every board (with sizes; the MNIST MLP
# variant where it fits), then QEMU runs: `hello` (twice: instruction counts must be identical),
# the `counter` self-test, `dsp_check`, the `mnist` (CNN, MLP, profile) and `gpt` binaries, and
# the exit codes of the `fault` binary. Needs the tools of install-tools.sh.
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

check "cargo fmt" 0 cargo fmt --check
for board in qemu nrf52840 stm32f411; do
    features=(--no-default-features --features "$board")
    check "clippy $board" 0 cargo clippy --release "${features[@]}" --all-targets -- -D warnings
    check "build $board" 0 cargo build --release "${features[@]}"
    if command -v arm-none-eabi-size >/dev/null; then
        arm-none-eabi-size target/thumbv7em-none-eabihf/release/{hello,mnist,gpt,chat}
    fi
    # The MNIST MLP (~465 KB) instead of the default CNN: fits qemu and nrf52840, not the
    # stm32f411's 512 KiB next to the test images (that board runs the CNN).
    if [[ $board != stm32f411 ]]; then
        check "build $board mnist (MLP)" 0 \
            env AKA_MNIST_MODEL=mnist-mlp.aka cargo build --release "${features[@]}" --bin mnist
        if command -v arm-none-eabi-size >/dev/null; then
            arm-none-eabi-size target/thumbv7em-none-eabihf/release/mnist
        fi
    fi
done

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
check "mnist (CNN)" 0 cargo run --release --bin mnist
check "mnist (MLP)" 0 env AKA_MNIST_MODEL=mnist-mlp.aka cargo run --release --bin mnist
check "mnist (CNN, per-layer profile)" 0 cargo run --release --features profile --bin mnist
check "gpt" 0 cargo run --release --bin gpt
for fault in panic:101 defmt-panic:101 udf:102 bus:102 overflow:102; do
    check "fault ${fault%%:*}" "${fault##*:}" env AKA_FAULT="${fault%%:*}" cargo run --release --bin fault
done

echo "firmware: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
