//! Fuzzes the bootstrap config parser: TOML text → validated
//! `BootstrapConfig`, through `BootstrapConfig::from_toml`, the same code
//! `BootstrapConfig::load` runs after reading the file.
//!
//! As for `tunnel_config`, a relative `private_key_file` resolves into a
//! directory that does not exist and fails. Accepted configs must have
//! positive, finite limits and an observe port other than the listen port;
//! refused ones must name the file.
#![no_main]

use std::path::Path;

use antq::bootstrap::config::BootstrapConfig;
use libfuzzer_sys::fuzz_target;

const PATH: &str = "/nonexistent/antq-fuzz/bootstrap.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(PATH);
    match BootstrapConfig::from_toml(path, text) {
        Ok(c) => {
            let l = c.settings.limits;
            for v in [
                l.coordination_per_sec,
                l.coordination_burst,
                l.relay_bytes_per_sec,
                l.relay_burst_bytes,
                l.connections_per_sec_per_ip,
                l.observe_per_sec_per_ip,
                l.observe_per_sec,
            ] {
                assert!(v.is_finite() && v > 0.0, "limit {v}");
            }
            // The observe socket is never the listen port (unless both are
            // chosen by the system).
            if let Some(observe) = c.settings.observe.bind_addr(c.settings.listen) {
                let listen = c.settings.listen.port();
                assert!(observe.port() != listen || listen == 0, "{observe}");
                assert_eq!(observe.ip(), c.settings.listen.ip());
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(PATH), "{message}");
        }
    }
});
