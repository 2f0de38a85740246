//! Fuzzes the tunnel config parser: TOML text → validated `TunnelConfig`,
//! through `TunnelConfig::from_toml`, the same code `TunnelConfig::load` runs
//! after reading the file.
//!
//! The config "lives" in a directory that does not exist, so a relative
//! `private_key_file` simply fails to load; an absolute one is read with the
//! key file size cap. Accepted configs must satisfy the documented
//! invariants; refused ones must name the file.
#![no_main]

use std::path::Path;

use antq::tunnel::config::{TunnelConfig, MAX_MTU, MIN_MTU_IPV4};
use libfuzzer_sys::fuzz_target;

const PATH: &str = "/nonexistent/antq-fuzz/peer.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(PATH);
    match TunnelConfig::from_toml(path, text) {
        Ok(c) => {
            assert!(!c.name.is_empty() && c.name.len() <= 15);
            assert!(!c.addresses.is_empty());
            assert!((MIN_MTU_IPV4..=MAX_MTU).contains(&c.mtu));
            let own = c.identity.peer_id();
            for (i, p) in c.peers.iter().enumerate() {
                assert_ne!(p.public_key, own);
                for q in &c.peers[..i] {
                    assert_ne!(p.public_key, q.public_key);
                    for a in &p.allowed_ips {
                        for b in &q.allowed_ips {
                            assert!(!a.contains(b) && !b.contains(a), "{a} overlaps {b}");
                        }
                    }
                }
                for a in &p.allowed_ips {
                    assert_eq!(a.trunc(), *a, "host bits in {a}");
                }
            }
            if let Some(m) = c.metrics {
                assert!(m.ip().is_loopback());
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(PATH), "{message}");
        }
    }
});
