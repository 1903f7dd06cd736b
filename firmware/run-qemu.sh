#!/usr/bin/env bash
# Cargo runner for the `qemu` board: run-qemu.sh ELF
#
# Runs ELF on QEMU's mps2-an386 (Cortex-M4F) with -icount shift=0 (1 instruction = 1 ns of virtual
# time, which the firmware's instruction counter relies on), decodes the defmt log from
# semihosting stdout with defmt-print, and exits with the firmware's exit code (0 ok, 101 panic,
# 102 HardFault, 103 unhandled exception; 124 if QEMU_TIMEOUT seconds pass, default 600).
#
# Needs: qemu-system-arm (Debian: qemu-system-arm), defmt-print (cargo install defmt-print).
set -uo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 ELF" >&2
    exit 2
fi
elf=$1
for tool in qemu-system-arm defmt-print; do
    command -v "$tool" >/dev/null || { echo "run-qemu.sh: $tool not found" >&2; exit 127; }
done

timeout "${QEMU_TIMEOUT:-600}" \
    qemu-system-arm \
        -machine mps2-an386 -cpu cortex-m4 \
        -icount shift=0 \
        -display none -monitor none -serial none \
        -semihosting-config enable=on,target=native \
        -kernel "$elf" \
    </dev/null | defmt-print -e "$elf"
status=("${PIPESTATUS[@]}")
if [[ ${status[0]} -eq 124 ]]; then
    echo "run-qemu.sh: timed out after ${QEMU_TIMEOUT:-600} s" >&2
fi
exit "${status[0]}"
