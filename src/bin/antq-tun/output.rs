//! Everything `antq-tun` prints goes through here (`outln!`, `errln!`;
//! `println!`/`eprintln!` are denied in this binary by clippy).
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader has gone
//! (`antq-tun status --json | head -1`) fails with EPIPE, and `println!`
//! turns that into a panic with a backtrace. Here a write that fails that
//! way returns [`StdoutClosed`], the command stops where it is, and `main`
//! exits 0 without a word: the reader stopped reading on purpose and got
//! what it wanted (clap does the same for `--help | head -1`). A dying
//! SIGPIPE (exit 141 as the shell reports it, what C tools do) would make a
//! `set -o pipefail` script, such as this project's own, fail on a
//! harmless `| head`. Any other write error is an error (exit 1).

use std::fmt;
use std::io::{self, Write as _};

/// Stdout was closed before we were done (EPIPE): not an error for the
/// user; `main` ends the command quietly with exit 0.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// True if `error` (or anything in its chain) is [`StdoutClosed`].
pub fn is_stdout_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<StdoutClosed>())
}

fn stdout_error(error: io::Error) -> anyhow::Error {
    if error.kind() == io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(error).context("writing to stdout")
    }
}

/// Writes `bytes` to stdout and flushes.
pub fn write_all(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// Writes one formatted line to stdout (what `outln!` calls).
pub fn line(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// Writes one formatted line to stderr; a closed stderr is ignored (there
/// is nowhere left to report it).
pub fn err_line(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `println!` that returns `anyhow::Result<()>`: `outln!("x {y}")?;`
/// ([`StdoutClosed`] when the reader has gone).
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::err_line(format_args!($($arg)*))
    };
}
