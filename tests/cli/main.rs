//! The `antq-tun` command line, run as a program: keys, config errors,
//! `status` of a running bootstrap, and the example configs. One test
//! binary; the tests that need root (`ip netns`, root's `/run/antq`) are
//! `#[ignore = "needs root"]` and run by `sudo scripts/test.sh`.

#[path = "../common/mod.rs"]
mod common;

mod bootstrap_status;
#[cfg(unix)]
mod config_errors;
mod example_configs;
mod keys;
