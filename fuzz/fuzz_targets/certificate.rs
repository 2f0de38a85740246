//! Fuzzes the certificate decoder and the PEM reader: whatever decodes is
//! canonical (re-encodes to the same bytes, and the signed part is the
//! body's encoding) and passes the field rules; verification of arbitrary
//! input never succeeds against a CA that signed nothing.
#![no_main]

use antq::cert::{from_pem, verify};
use antq::identity::Identity;
use antq::proto::cert::Certificate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((cert, signed)) = Certificate::decode(data) {
        assert_eq!(cert.encode(), data);
        assert_eq!(signed, cert.body.encode().as_slice());
        assert!(cert.body.check().is_ok());
        let ca = Identity::from_secret_bytes(&[7; 32]).peer_id();
        let now = cert.body.not_before;
        assert!(verify(&cert, &[ca], &[], now).is_err() || cert.body.ca == *ca.as_bytes());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cert) = from_pem(text) {
            assert!(Certificate::decode(&cert.encode()).is_ok());
        }
    }
});
