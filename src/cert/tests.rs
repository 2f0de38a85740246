use super::*;
use crate::proto::cert::CertBody;

fn ca() -> CaKey {
    CaKey::from_parts("lab", Identity::from_secret_bytes(&[1; 32])).unwrap()
}

fn host() -> Identity {
    Identity::from_secret_bytes(&[2; 32])
}

fn body(host: &Identity) -> CertBody {
    CertBody {
        network: String::new(),
        ca: [0; 32],
        host: *host.peer_id().as_bytes(),
        name: "db1".into(),
        not_before: 1_700_000_000,
        not_after: 1_731_536_000,
        addresses: vec!["10.90.0.5/24".parse().unwrap()],
        groups: vec!["db".into(), "admins".into(), "db".into()],
        routes: vec![],
    }
}

const NOW: u64 = 1_710_000_000;

#[test]
fn sign_sets_network_and_ca_sorts_and_verifies() {
    let ca = ca();
    let cert = ca.sign(body(&host())).unwrap();
    assert_eq!(cert.body.network, "lab");
    assert_eq!(&cert.body.ca, ca.public().as_bytes());
    assert_eq!(cert.body.groups, ["admins", "db"]);
    verify(&cert, &[ca.public()], &[], NOW).unwrap();
    check_presenter(&cert, &host().peer_id()).unwrap();
}

#[test]
fn signature_vector() {
    // Ed25519 is deterministic: CA seed [1; 32] signing this body always
    // gives these bytes (checked independently with Python's `cryptography`
    // 48 / OpenSSL over the same body bytes). A change here changes every
    // issued certificate.
    let cert = ca().sign(body(&host())).unwrap();
    let text = to_pem(&cert);
    assert!(
        text.starts_with("-----BEGIN ANTQ CERTIFICATE-----\r\n"),
        "{text}"
    );
    let sig: String = cert.signature.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        sig,
        include_str!("vector_signature.txt").trim(),
        "signature of the vector body changed"
    );
    assert_eq!(from_pem(&text).unwrap(), cert);
}

#[test]
fn refusals_name_their_reason() {
    let ca = ca();
    let other = CaKey::from_parts("lab", Identity::from_secret_bytes(&[3; 32])).unwrap();
    let cert = ca.sign(body(&host())).unwrap();
    let reason = |r: Result<(), CertError>| r.unwrap_err().reason();
    assert_eq!(
        reason(verify(&cert, &[other.public()], &[], NOW)),
        "unknown_ca"
    );
    assert_eq!(reason(verify(&cert, &[], &[], NOW)), "unknown_ca");
    assert_eq!(
        reason(verify(&cert, &[ca.public()], &[], 1_600_000_000)),
        "not_yet_valid"
    );
    assert_eq!(
        reason(verify(&cert, &[ca.public()], &[], 1_731_536_000)),
        "expired"
    );
    assert_eq!(
        reason(verify(&cert, &[ca.public()], &[host().peer_id()], NOW)),
        "revoked"
    );
    assert_eq!(
        reason(check_presenter(&cert, &other.public())),
        "key_mismatch"
    );
    // Two trusted CAs (rotation): either signs.
    verify(&cert, &[other.public(), ca.public()], &[], NOW).unwrap();
    // Anything changed after signing breaks the signature.
    let mut forged = cert.clone();
    forged.body.addresses = vec!["10.90.0.6/24".parse().unwrap()];
    assert_eq!(
        reason(verify(&forged, &[ca.public()], &[], NOW)),
        "bad_signature"
    );
    let mut forged = cert.clone();
    forged.body.not_after += 1;
    assert_eq!(
        reason(verify(&forged, &[ca.public()], &[], NOW)),
        "bad_signature"
    );
    // A certificate signed by another key claiming our CA.
    let mut forged = other.sign(body(&host())).unwrap();
    forged.body.ca = *ca.public().as_bytes();
    assert_eq!(
        reason(verify(&forged, &[ca.public()], &[], NOW)),
        "bad_signature"
    );
}

#[test]
fn ca_file_round_trip_never_overwrites_and_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.key");
    let ca = CaKey::generate("office-net").unwrap();
    ca.save_new(&path).unwrap();
    let again = CaKey::load(&path).unwrap();
    assert_eq!(again.public(), ca.public());
    assert_eq!(again.network(), "office-net");
    assert!(ca.save_new(&path).is_err(), "overwrote the CA file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    std::fs::write(
        dir.path().join("bad"),
        "network = \"x\"\nprivate_key = \"AAAA\"\nextra = 1\n",
    )
    .unwrap();
    let e = CaKey::load(&dir.path().join("bad"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad") && e.contains("extra"), "{e}");
    assert!(CaKey::generate("has space").is_err());
}

#[test]
fn certificate_file_round_trip_and_wrong_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.cert");
    let cert = ca().sign(body(&host())).unwrap();
    save_certificate(&cert, &path).unwrap();
    assert_eq!(load_certificate(&path).unwrap(), cert);
    assert!(
        save_certificate(&cert, &path).is_err(),
        "overwrote a certificate"
    );
    let key = dir.path().join("ca.key");
    ca().save_new(&key).unwrap();
    let e = load_certificate(&key).unwrap_err().to_string();
    assert!(e.contains("ca.key") && e.contains("PEM"), "{e}");
    let other = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
    let e = from_pem(&other).unwrap_err().to_string();
    assert!(e.contains("not `ANTQ CERTIFICATE`"), "{e}");
}
