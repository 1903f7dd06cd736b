#!/usr/bin/env bash
# Installs what building and running the firmware needs, idempotently (for CI and new machines):
# the Cortex-M targets of the pinned toolchain, QEMU and ARM binutils from Debian, and
# defmt-print and flip-link from crates.io (pinned versions, ~3 min to compile).
set -euo pipefail
cd "$(dirname "$0")"

DEFMT_PRINT_VERSION=1.2.0
FLIP_LINK_VERSION=0.1.12

rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi

if ! command -v qemu-system-arm >/dev/null || ! command -v arm-none-eabi-size >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-arm binutils-arm-none-eabi
fi

# `cargo install` skips a crate already installed at that version.
cargo install defmt-print --version "$DEFMT_PRINT_VERSION" --locked
cargo install flip-link --version "$FLIP_LINK_VERSION" --locked
