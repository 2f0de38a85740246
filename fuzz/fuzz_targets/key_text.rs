//! Fuzzes key decoding: `PeerId` from text (config files, command line),
//! `Identity::from_base64` (private keys in configs and key files) and
//! `PeerId::from_spki_der` (the raw public key a TLS peer presents).
//!
//! Anything accepted must round-trip through its text or DER form.
#![no_main]

use antq::identity::{Identity, PeerId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spki) = PeerId::from_spki_der(data) {
        assert_eq!(spki.to_spki_der(), data);
        assert_eq!(PeerId::from_bytes(*spki.as_bytes()).unwrap(), spki);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(peer) = text.parse::<PeerId>() {
        let again = peer.to_string();
        assert_eq!(again.len(), 44);
        assert_eq!(again.parse::<PeerId>().unwrap(), peer);
        assert_eq!(PeerId::from_spki_der(&peer.to_spki_der()).unwrap(), peer);
    }
    if let Ok(id) = Identity::from_base64(text) {
        let again = Identity::from_base64(&id.to_base64()).unwrap();
        assert_eq!(again.peer_id(), id.peer_id());
    }
});
