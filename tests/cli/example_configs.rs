//! The example configs in `configs/` are valid (with a real key file put in
//! place of the example path).

use antq::bootstrap::config::BootstrapConfig;
use antq::identity::Identity;
use antq::tunnel::config::TunnelConfig;

fn with_key(example: &str, key_path: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    Identity::generate()
        .save_new(&dir.path().join("k"))
        .unwrap();
    let text = std::fs::read_to_string(
        concat!(env!("CARGO_MANIFEST_DIR"), "/configs/").to_owned() + example,
    )
    .unwrap()
    .replace(key_path, "k");
    let path = dir.path().join(example);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn peer_example_loads() {
    let (_dir, path) = with_key("peer.toml", "/etc/antq/host.key");
    let config = TunnelConfig::load(&path).unwrap();
    assert_eq!(config.peers.len(), 2);
    assert_eq!(config.bootstrap.len(), 1);
}

#[test]
fn bootstrap_example_loads() {
    let (_dir, path) = with_key("bootstrap.toml", "/etc/antq/bootstrap.key");
    let config = BootstrapConfig::load(&path).unwrap();
    assert!(config.settings.relay);
}

#[test]
fn commented_metrics_lines_are_valid() {
    for (example, key) in [
        ("peer.toml", "/etc/antq/host.key"),
        ("bootstrap.toml", "/etc/antq/bootstrap.key"),
    ] {
        let (_dir, path) = with_key(example, key);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\n# metrics = \"127.0.0.1:"), "{example}");
        std::fs::write(&path, text.replace("\n# metrics = ", "\nmetrics = ")).unwrap();
        let metrics = if example == "peer.toml" {
            TunnelConfig::load(&path).unwrap().metrics
        } else {
            BootstrapConfig::load(&path).unwrap().metrics
        };
        assert!(metrics.is_some_and(|m| m.ip().is_loopback()), "{example}");
    }
}

#[test]
fn member_example_loads_with_a_certificate_of_its_ca() {
    use antq::cert::{save_certificate, CaKey};
    use antq::proto::cert::CertBody;
    let (dir, path) = with_key("member.toml", "/etc/antq/host.key");
    let key = Identity::load(&dir.path().join("k")).unwrap().0;
    let example = std::fs::read_to_string(&path).unwrap();
    // The example's CA key is a placeholder: a real CA signs here and its
    // key takes the placeholder's place.
    let ca = CaKey::generate("office").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let cert = ca
        .sign(CertBody {
            network: String::new(),
            ca: [0; 32],
            host: *key.peer_id().as_bytes(),
            name: "db1".into(),
            not_before: now - 60,
            not_after: now + 86_400 * 365,
            addresses: vec![
                "10.90.0.5/24".parse().unwrap(),
                "fd90::5/64".parse().unwrap(),
            ],
            groups: vec![],
            routes: vec![],
        })
        .unwrap();
    save_certificate(&cert, &dir.path().join("host.cert")).unwrap();
    let text = example
        .replace(
            "oJnc9PZPoz0xav/KSMERjYVI6iHimOQAk4VC2tk/dKs=",
            &ca.public().to_string(),
        )
        .replace("/etc/antq/host.cert", "host.cert");
    std::fs::write(&path, text).unwrap();
    let config = TunnelConfig::load(&path).unwrap();
    assert!(config.peers.is_empty());
    assert_eq!(config.addresses.len(), 2);
    assert_eq!(config.network.unwrap().ca, [ca.public()]);
}
