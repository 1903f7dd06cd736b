#!/usr/bin/env bash
# Embedding checks (issue 16): the embassy example builds (release) from a clean clone and its
# size is printed; aka-core packages and passes `cargo publish --dry-run`; the core README's
# doctests run; aka-core builds with its MSRV if that toolchain is installed (host: check;
# thumbv7em with the DSP kernels: a release build).
#
# Needs what .ci/run installs (the pinned toolchain with the thumbv7em-none-eabihf target,
# arm-none-eabi-size and flip-link from firmware/install-tools.sh) and network access to crates.io
# (the example's dependencies, the publish dry run). It installs the MSRV toolchain (minimal
# profile + thumbv7em) if rustup can; if not, the MSRV check says SKIPPED.
# probe-rs is only the example's runner, not needed to build.
set -euo pipefail
cd "$(dirname "$0")/.."
exec </dev/null
export CARGO_TERM_COLOR=never
start=$SECONDS

echo "== embassy example (examples/embassy-nrf52840): release build"
(
    cd examples/embassy-nrf52840
    cargo fmt --check
    cargo build --release --locked
    cargo clippy --release --locked -- -D warnings
    elf=target/thumbv7em-none-eabihf/release/aka-embassy-nrf52840
    arm-none-eabi-size "$elf"
    arm-none-eabi-size "$elf" | awk 'NR == 2 {
        printf "embassy example: flash (text+data) %d bytes, static RAM (data+bss) %d bytes\n", $1 + $2, $2 + $3
    }'
)

echo "== aka-core: the README's doctests, docs without warnings"
cargo test -p aka-core --doc
RUSTDOCFLAGS="-D warnings" cargo doc -p aka-core --no-deps

echo "== aka-core: package and publish dry run"
cargo package -p aka-core
cargo publish --dry-run -p aka-core

msrv=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' core/Cargo.toml)
echo "== aka-core MSRV ($msrv)"
if ! rustup run "$msrv.0" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$msrv.0" --profile minimal --target thumbv7em-none-eabihf || true
fi
if rustup run "$msrv.0" rustc --version >/dev/null 2>&1; then
    # A separate target dir: the pinned toolchain's artifacts stay untouched.
    export CARGO_TARGET_DIR=target/msrv
    cargo "+$msrv.0" check -p aka-core --locked
    if rustup target list --installed --toolchain "$msrv.0" | grep -qx thumbv7em-none-eabihf; then
        cargo "+$msrv.0" build -p aka-core --locked --release --target thumbv7em-none-eabihf --features defmt
    else
        echo "MSRV thumbv7em build SKIPPED: rustup target add --toolchain $msrv.0 thumbv7em-none-eabihf"
    fi
else
    echo "MSRV check SKIPPED: toolchain $msrv.0 not installed" \
        "(rustup toolchain install $msrv.0 --profile minimal --target thumbv7em-none-eabihf)"
fi

echo "embedding checks: ok ($((SECONDS - start)) s)"
