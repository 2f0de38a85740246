//! Node identity: Ed25519 key pairs, the [`PeerId`] derived from them, and
//! private key files.
//!
//! A peer is its public key. The text form of keys is standard base64 of the
//! 32 raw bytes (44 characters), the same shape as WireGuard keys, so keys can
//! be pasted between config files and terminals. Private key files hold that
//! base64 text of the 32-byte secret seed and are created with mode 0600.

use std::fmt;
use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

/// Length in bytes of a raw Ed25519 public or private key.
pub const KEY_LEN: usize = 32;

/// Largest private key file we read: the key is 44 characters, so anything
/// much longer (or a device such as `/dev/zero`) is not a key file.
pub const MAX_KEY_FILE_LEN: u64 = 4096;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key bytes
/// follow it.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410): the 32 seed
/// bytes follow it.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Errors from parsing keys or reading key files.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The text is not valid standard base64.
    #[error("key is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The decoded key does not have 32 bytes.
    #[error("key has {0} bytes, expected 32 (a 44-character base64 string)")]
    Length(usize),
    /// The 32 bytes are not a valid Ed25519 public key (not a curve point).
    #[error("bytes are not a valid Ed25519 public key")]
    InvalidPublicKey,
    /// The DER SubjectPublicKeyInfo is not an Ed25519 key.
    #[error("public key is not an Ed25519 SubjectPublicKeyInfo")]
    NotEd25519Spki,
    /// A key file could not be read or written.
    #[error("key file {path}: {source}")]
    File {
        /// The file in question.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A key file is larger than [`MAX_KEY_FILE_LEN`] bytes.
    #[error("key file {path} is larger than {MAX_KEY_FILE_LEN} bytes; a key file holds one 44-character key")]
    FileTooLarge {
        /// The file in question.
        path: PathBuf,
    },
    /// A key file holds something that is not a key.
    #[error("key file {path}: {source}")]
    FileContent {
        /// The file in question.
        path: PathBuf,
        /// What is wrong with its content.
        source: Box<IdentityError>,
    },
}

/// The identity of a peer: its 32-byte Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId([u8; KEY_LEN]);

impl PeerId {
    /// Wraps raw public key bytes after checking they are a valid Ed25519 point.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Result<Self, IdentityError> {
        VerifyingKey::from_bytes(&bytes).map_err(|_| IdentityError::InvalidPublicKey)?;
        Ok(Self(bytes))
    }

    /// The raw 32 public key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The DER SubjectPublicKeyInfo that carries this key in TLS (RFC 7250).
    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut der = Vec::with_capacity(SPKI_PREFIX.len() + KEY_LEN);
        der.extend_from_slice(&SPKI_PREFIX);
        der.extend_from_slice(&self.0);
        der
    }

    /// Extracts the key from a DER SubjectPublicKeyInfo, accepting only Ed25519.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, IdentityError> {
        let key = der
            .strip_prefix(&SPKI_PREFIX[..])
            .ok_or(IdentityError::NotEd25519Spki)?;
        let bytes: [u8; KEY_LEN] = key.try_into().map_err(|_| IdentityError::NotEd25519Spki)?;
        Self::from_bytes(bytes)
    }

    /// Whether `signature` is this key's Ed25519 signature of `msg`
    /// (strict verification: no malleable or small-order forms).
    pub fn verify(&self, msg: &[u8], signature: &[u8; 64]) -> bool {
        VerifyingKey::from_bytes(&self.0).is_ok_and(|key| {
            key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(signature))
                .is_ok()
        })
    }

    /// A short form for logs: the first 8 base64 characters.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(8);
        s
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

impl FromStr for PeerId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(decode_key(s)?)
    }
}

/// Decodes a 44-character base64 key into 32 bytes.
fn decode_key(s: &str) -> Result<[u8; KEY_LEN], IdentityError> {
    let bytes = Zeroizing::new(STANDARD.decode(s.trim())?);
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| IdentityError::Length(bytes.len()))
}

/// An Ed25519 key pair: the private key of this node.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
}

impl Identity {
    /// Generates a new key pair from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// Builds the key pair from the 32-byte secret seed.
    pub fn from_secret_bytes(secret: &[u8; KEY_LEN]) -> Self {
        Self {
            signing: SigningKey::from_bytes(secret),
        }
    }

    /// Parses a base64 private key (44 characters).
    pub fn from_base64(s: &str) -> Result<Self, IdentityError> {
        let secret = Zeroizing::new(decode_key(s)?);
        Ok(Self::from_secret_bytes(&secret))
    }

    /// The private key as base64 text (the key file format).
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.signing.to_bytes()))
    }

    /// This node's peer id (public key).
    pub fn peer_id(&self) -> PeerId {
        PeerId(self.signing.verifying_key().to_bytes())
    }

    /// The key quinn derives stateless reset tokens from, derived from the
    /// private key (HMAC-SHA256 with a fixed label): a node that restarts
    /// with the same key can then reset the connections its previous run
    /// left open, and their other ends notice at once instead of after the
    /// idle timeout. It reveals nothing about the private key.
    pub(crate) fn stateless_reset_key(&self) -> ring::hmac::Key {
        let seed = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.signing.as_bytes());
        let derived = ring::hmac::sign(&seed, b"antq stateless reset key v1");
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
    }

    /// The private key as DER PKCS#8 v1, the form rustls loads.
    pub(crate) fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let mut der = Zeroizing::new(Vec::with_capacity(PKCS8_PREFIX.len() + KEY_LEN));
        der.extend_from_slice(&PKCS8_PREFIX);
        der.extend_from_slice(self.signing.as_bytes());
        der
    }

    /// Reads a private key file (base64 text). Returns the identity and
    /// whether the file is readable by group or others (callers should warn).
    pub fn load(path: &Path) -> Result<(Self, KeyFilePermissions), IdentityError> {
        let file_err = |source| IdentityError::File {
            path: path.to_owned(),
            source,
        };
        let mut text = Zeroizing::new(String::new());
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_KEY_FILE_LEN + 1).read_to_string(&mut text))
            .map_err(file_err)?;
        if text.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(IdentityError::FileTooLarge {
                path: path.to_owned(),
            });
        }
        let perms = KeyFilePermissions::of(path).map_err(file_err)?;
        let id = Self::from_base64(&text).map_err(|e| IdentityError::FileContent {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        Ok((id, perms))
    }

    /// Writes the private key to a new file created with mode 0600. Fails if
    /// the file already exists, so a key is never overwritten by accident.
    pub fn save_new(&self, path: &Path) -> Result<(), IdentityError> {
        let mut text = self.to_base64();
        text.push('\n');
        write_new_private_file(path, text.as_bytes())
    }

    /// The Ed25519 signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.signing.sign(msg).to_bytes()
    }
}

/// Writes `contents` to a new file created with mode 0600 (on Unix), synced
/// to disk. Fails if the file exists: a private key is never overwritten.
pub fn write_new_private_file(path: &Path, contents: &[u8]) -> Result<(), IdentityError> {
    let file_err = |source| IdentityError::File {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(file_err)?;
    file.write_all(contents).map_err(file_err)?;
    file.sync_all().map_err(file_err)
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

/// Whether a key file is private to its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFilePermissions {
    /// Only the owner can read it (or the platform has no such notion).
    Private,
    /// Group or others may read or write it; the mode is given.
    Readable {
        /// The file's permission bits.
        mode: u32,
    },
}

impl KeyFilePermissions {
    fn of(path: &Path) -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Ok(Self::Readable { mode });
            }
        }
        #[cfg(not(unix))]
        let _ = path;
        Ok(Self::Private)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_derivation_is_stable() {
        let id = Identity::generate();
        let text = id.to_base64();
        assert_eq!(text.len(), 44);
        let again = Identity::from_base64(&text).unwrap();
        assert_eq!(again.peer_id(), id.peer_id());
        let pid_text = id.peer_id().to_string();
        assert_eq!(pid_text.len(), 44);
        assert_eq!(pid_text.parse::<PeerId>().unwrap(), id.peer_id());
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 §7.1, TEST 1.
        let secret: [u8; 32] =
            hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let public: [u8; 32] =
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let id = Identity::from_secret_bytes(&secret);
        assert_eq!(id.peer_id().as_bytes(), &public);
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(matches!(
            "abc".parse::<PeerId>(),
            Err(IdentityError::Base64(_)) | Err(IdentityError::Length(_))
        ));
        assert!(matches!(
            "AAAA".parse::<PeerId>(),
            Err(IdentityError::Length(3))
        ));
        assert!(matches!(
            Identity::from_base64("not base64 at all!!"),
            Err(IdentityError::Base64(_))
        ));
    }

    #[test]
    fn spki_round_trip_and_rejects_other_algorithms() {
        let pid = Identity::generate().peer_id();
        let der = pid.to_spki_der();
        assert_eq!(der.len(), 44);
        assert_eq!(PeerId::from_spki_der(&der).unwrap(), pid);
        let mut other = der.clone();
        other[8] = 0x71; // Ed448 OID
        assert!(PeerId::from_spki_der(&other).is_err());
        assert!(PeerId::from_spki_der(&der[..40]).is_err());
    }

    #[test]
    fn key_file_is_private_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.key");
        let id = Identity::generate();
        id.save_new(&path).unwrap();
        let (loaded, perms) = Identity::load(&path).unwrap();
        assert_eq!(loaded.peer_id(), id.peer_id());
        assert_eq!(perms, KeyFilePermissions::Private);
        assert!(id.save_new(&path).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let (_, perms) = Identity::load(&path).unwrap();
            assert_eq!(perms, KeyFilePermissions::Readable { mode: 0o644 });
        }
    }

    #[test]
    fn oversized_key_file_is_refused_without_reading_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.key");
        std::fs::write(&path, "A".repeat(10_000)).unwrap();
        assert!(matches!(
            Identity::load(&path),
            Err(IdentityError::FileTooLarge { .. })
        ));
        #[cfg(unix)]
        assert!(matches!(
            Identity::load(Path::new("/dev/zero")),
            Err(IdentityError::FileTooLarge { .. })
        ));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn private_key_text_round_trips(seed in any::<[u8; 32]>()) {
                let id = Identity::from_secret_bytes(&seed);
                let again = Identity::from_base64(&id.to_base64()).unwrap();
                prop_assert_eq!(again.peer_id(), id.peer_id());
            }

            #[test]
            fn peer_id_text_and_spki_round_trip(seed in any::<[u8; 32]>()) {
                let peer = Identity::from_secret_bytes(&seed).peer_id();
                let text = peer.to_string();
                prop_assert_eq!(text.len(), 44);
                prop_assert_eq!(text.parse::<PeerId>().unwrap(), peer);
                prop_assert_eq!(format!(" {text}\n").parse::<PeerId>().unwrap(), peer);
                prop_assert_eq!(PeerId::from_spki_der(&peer.to_spki_der()).unwrap(), peer);
            }

            #[test]
            fn arbitrary_text_and_der_never_panic(text in ".{0,64}", der in proptest::collection::vec(any::<u8>(), 0..64)) {
                let _ = text.parse::<PeerId>();
                let _ = Identity::from_base64(&text);
                if let Ok(peer) = PeerId::from_spki_der(&der) {
                    prop_assert_eq!(peer.to_spki_der(), der);
                }
            }
        }
    }

    fn hex(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
