//! The `antq-tun` command line, run as a program: keys, config errors,
//! `status` of a running bootstrap, the example configs, completions and
//! man pages, a closed stdout, and the Debian package. One test
//! binary; the tests that need root (`ip netns`, root's `/run/antq`) are
//! `#[ignore = "needs root"]` and run by `sudo scripts/test.sh`.

#[path = "../common/mod.rs"]
mod common;

mod bootstrap_status;
mod completions_man;
#[cfg(unix)]
mod config_errors;
mod example_configs;
mod keys;
#[cfg(target_os = "linux")]
mod package;
#[cfg(unix)]
mod stdout_closed;
