//! A network's CA and its host certificates: signing, verification, files.
//!
//! A network CA is an Ed25519 key kept offline ([`CaKey`], written by
//! `antq-tun ca init`). It signs one certificate per host
//! ([`crate::proto::cert::Certificate`]: key, name, overlay addresses,
//! groups, routes, validity). Hosts trust one or more CA public keys (more
//! than one while a CA is rotated) and accept as a peer any host whose
//! certificate verifies ([`verify`]), without listing it.
//!
//! Files: the CA key is a small TOML file (`network`, `private_key`),
//! created 0600 and never overwritten; a certificate is PEM
//! (`ANTQ CERTIFICATE`) around the wire bytes.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::identity::{write_new_private_file, Identity, IdentityError, PeerId};
use crate::proto::cert::{CertBody, CertFieldError, Certificate, MAX_CERT_LEN};
use crate::proto::DecodeError;

/// The PEM label of a certificate file.
pub const PEM_LABEL: &str = "ANTQ CERTIFICATE";
/// Largest certificate or CA key file read.
const MAX_FILE_LEN: u64 = 16 * 1024;

/// Why a certificate is refused, or a CA or certificate file is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Signed by a CA this host does not trust.
    #[error("signed by CA {0}, which is not trusted here")]
    UnknownCa(String),
    /// The signature does not verify.
    #[error("the CA signature does not verify")]
    BadSignature,
    /// Not valid yet.
    #[error("not valid before {0} (Unix time)")]
    NotYetValid(u64),
    /// Expired.
    #[error("expired at {0} (Unix time)")]
    Expired(u64),
    /// The host's key is revoked.
    #[error("host key {0} is revoked")]
    Revoked(String),
    /// The certificate is for another key than the one that presented it.
    #[error("certifies key {certified}, but was presented by {presented}")]
    KeyMismatch {
        /// The key in the certificate.
        certified: String,
        /// The key of the connection that presented it.
        presented: String,
    },
    /// A directory answer that does not answer the question (another key,
    /// or an address the certificate does not cover).
    #[error("wrong answer: {0}")]
    WrongAnswer(String),
    /// The bytes are not a certificate.
    #[error("malformed certificate")]
    Malformed(#[from] DecodeError),
    /// A field cannot be certified as given.
    #[error(transparent)]
    Field(#[from] CertFieldError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{path}: {reason}")]
    FileContent {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The CA key file could not be written (or its key not read).
    #[error(transparent)]
    Key(#[from] IdentityError),
}

impl CertError {
    /// A short label for metrics and logs of refused certificates
    /// (`unknown_ca`, `bad_signature`, `not_yet_valid`, `expired`, `revoked`,
    /// `key_mismatch`, `wrong_answer`, `malformed`; `file` for the rest).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownCa(_) => "unknown_ca",
            Self::BadSignature => "bad_signature",
            Self::NotYetValid(_) => "not_yet_valid",
            Self::Expired(_) => "expired",
            Self::Revoked(_) => "revoked",
            Self::KeyMismatch { .. } => "key_mismatch",
            Self::WrongAnswer(_) => "wrong_answer",
            Self::Malformed(_) | Self::Field(_) => "malformed",
            Self::File { .. } | Self::FileContent { .. } | Self::Key(_) => "file",
        }
    }
}

/// Checks a certificate: signed by one of the `trusted` CAs, valid at `now`
/// (Unix seconds), its host not `revoked`. The caller checks that the key
/// presenting it is the certified one ([`check_presenter`]).
pub fn verify(
    cert: &Certificate,
    trusted: &[PeerId],
    revoked: &[PeerId],
    now: u64,
) -> Result<(), CertError> {
    let body = &cert.body;
    let ca = trusted
        .iter()
        .find(|k| k.as_bytes() == &body.ca)
        .ok_or_else(|| CertError::UnknownCa(key_text(&body.ca)))?;
    if !ca.verify(&body.encode(), &cert.signature) {
        return Err(CertError::BadSignature);
    }
    if now < body.not_before {
        return Err(CertError::NotYetValid(body.not_before));
    }
    if now >= body.not_after {
        return Err(CertError::Expired(body.not_after));
    }
    if revoked.iter().any(|k| k.as_bytes() == &body.host) {
        return Err(CertError::Revoked(key_text(&body.host)));
    }
    Ok(())
}

/// Checks that `presenter` (the key of the connection that sent the
/// certificate) is the certified host.
pub fn check_presenter(cert: &Certificate, presenter: &PeerId) -> Result<(), CertError> {
    if presenter.as_bytes() != &cert.body.host {
        return Err(CertError::KeyMismatch {
            certified: key_text(&cert.body.host),
            presented: presenter.to_string(),
        });
    }
    Ok(())
}

fn key_text(bytes: &[u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A network CA: its name and private key.
pub struct CaKey {
    network: String,
    identity: Identity,
}

impl std::fmt::Debug for CaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaKey")
            .field("network", &self.network)
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// The CA key file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaKeyFile {
    network: String,
    private_key: Zeroizing<String>,
}

impl CaKey {
    /// A new CA for the network `network` (its key from the OS CSPRNG).
    pub fn generate(network: &str) -> Result<Self, CertError> {
        Self::from_parts(network, Identity::generate())
    }

    /// A CA from its name and key.
    pub fn from_parts(network: &str, identity: Identity) -> Result<Self, CertError> {
        let probe = CertBody {
            network: network.to_owned(),
            ca: [0; 32],
            host: [0; 32],
            name: "x".into(),
            not_before: 0,
            not_after: 1,
            addresses: vec!["10.0.0.1/32".parse().expect("a valid prefix")],
            groups: vec![],
            routes: vec![],
        };
        probe.check()?;
        Ok(Self {
            network: network.to_owned(),
            identity,
        })
    }

    /// The network's name.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The CA's public key: what hosts list in `[network] ca`.
    pub fn public(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// Signs a certificate for `body`, after setting its network and CA
    /// key and putting it in canonical order.
    pub fn sign(&self, mut body: CertBody) -> Result<Certificate, CertError> {
        body.network.clone_from(&self.network);
        body.ca = *self.public().as_bytes();
        body.normalize()?;
        let signature = self.identity.sign(&body.encode());
        Ok(Certificate { body, signature })
    }

    /// Writes the CA to a new file (mode 0600; never overwrites).
    pub fn save_new(&self, path: &Path) -> Result<(), CertError> {
        let text = Zeroizing::new(format!(
            "# antq network CA. Keep it offline: whoever holds this file can add hosts to the network.\n\
             network = \"{}\"\nprivate_key = \"{}\"\n",
            self.network,
            self.identity.to_base64().as_str()
        ));
        Ok(write_new_private_file(path, text.as_bytes())?)
    }

    /// Reads a CA file written by [`Self::save_new`].
    pub fn load(path: &Path) -> Result<Self, CertError> {
        let text = Zeroizing::new(read_small(path)?);
        let content = |reason: String| CertError::FileContent {
            path: path.to_owned(),
            reason,
        };
        let file: CaKeyFile = toml::from_str(&text).map_err(|e| {
            content(format!(
                "not a CA key file as written by `antq-tun ca init` ({})",
                e.message()
            ))
        })?;
        let identity = Identity::from_base64(&file.private_key)
            .map_err(|e| content(format!("field `private_key`: {e}")))?;
        Self::from_parts(&file.network, identity)
            .map_err(|e| content(format!("field `network`: {e}")))
    }
}

/// The PEM text of a certificate.
pub fn to_pem(cert: &Certificate) -> String {
    pem::encode(&pem::Pem::new(PEM_LABEL, cert.encode()))
}

/// Parses the PEM text of a certificate (format only; see [`verify`]).
pub fn from_pem(text: &str) -> Result<Certificate, CertError> {
    let block = pem::parse(text).map_err(|e| CertError::FileContent {
        path: PathBuf::new(),
        reason: format!("not PEM: {e}"),
    })?;
    if block.tag() != PEM_LABEL {
        return Err(CertError::FileContent {
            path: PathBuf::new(),
            reason: format!("a PEM `{}` block, not `{PEM_LABEL}`", block.tag()),
        });
    }
    if block.contents().len() > MAX_CERT_LEN {
        return Err(DecodeError::Invalid {
            field: "certificate",
            reason: "longer than the largest possible",
        }
        .into());
    }
    Ok(Certificate::decode(block.contents())?.0)
}

/// Reads a certificate file.
pub fn load_certificate(path: &Path) -> Result<Certificate, CertError> {
    let text = read_small(path)?;
    from_pem(&text).map_err(|e| match e {
        CertError::FileContent { reason, .. } => CertError::FileContent {
            path: path.to_owned(),
            reason,
        },
        other => CertError::FileContent {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    })
}

/// Writes a certificate file (it is public: mode 0644; never overwrites).
pub fn save_certificate(cert: &Certificate, path: &Path) -> Result<(), CertError> {
    use std::io::Write as _;
    let file_err = |source| CertError::File {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(file_err)?;
    file.write_all(to_pem(cert).as_bytes()).map_err(file_err)?;
    file.sync_all().map_err(file_err)
}

fn read_small(path: &Path) -> Result<String, CertError> {
    use std::io::Read as _;
    let file_err = |source| CertError::File {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_LEN + 1).read_to_string(&mut text))
        .map_err(file_err)?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(CertError::FileContent {
            path: path.to_owned(),
            reason: format!("larger than {MAX_FILE_LEN} bytes"),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests;
