//! What the `aka` command-line tests share: running the built binary and reading its output.

use std::process::{Command, Output};

/// Runs the built `aka` binary with `args` and waits for it.
pub fn aka(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aka"))
        .args(args)
        .output()
        .expect("runs the aka binary")
}

/// The run's standard output, which must be UTF-8.
pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

/// The run's standard error (lossy UTF-8).
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
