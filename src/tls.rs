//! TLS for antq's QUIC connections: rustls configurations that authenticate
//! both sides with Ed25519 raw public keys (RFC 7250) instead of certificates.
//!
//! - TLS 1.3 only, ring crypto provider, ALPN [`ALPN_DATA`] or [`ALPN`].
//! - The client side expects exactly one key (the peer it dials) and records
//!   the key the server presented, so a mismatch can be reported with both.
//! - The server side accepts client keys according to an [`AcceptPolicy`]: an
//!   allowlist that can change at run time, or any key (a bootstrap node that
//!   serves strangers).
//! - Session resumption is off: every handshake proves the peer's key, so a
//!   key removed from an allowlist cannot come back through a ticket.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, Resumption};
use rustls::crypto::{
    verify_tls13_signature_with_raw_key, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{
    CertificateDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::identity::{Identity, PeerId};

/// The ALPN protocol id of antq's peer protocol, version 1.
pub const ALPN: &[u8] = b"antq/1";

/// The ALPN protocol id of version 1 with the data plane: both ends can
/// carry datagrams in `DATA` frames beside QUIC ([`crate::node::data`]).
/// Offered first by clients and preferred by servers; an end that offers
/// only [`ALPN`] gets version 1, and datagrams stay in QUIC.
pub const ALPN_DATA: &[u8] = b"antq/2";

/// The protocols we offer and accept, preferred first: [`ALPN_DATA`] only
/// with the data plane on.
fn alpn_protocols(data_plane: bool) -> Vec<Vec<u8>> {
    if data_plane {
        vec![ALPN_DATA.to_vec(), ALPN.to_vec()]
    } else {
        vec![ALPN.to_vec()]
    }
}

/// Whether `conn`'s handshake negotiated [`ALPN_DATA`].
pub fn negotiated_data_plane(conn: &quinn::Connection) -> bool {
    conn.handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol)
        .is_some_and(|p| p == ALPN_DATA)
}

/// The server name clients put in their handshake. Raw public keys carry no
/// names, so this is a fixed value that is never checked.
pub const SERVER_NAME: &str = "antq.invalid";

/// Errors from building TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration or the key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// quinn refused the rustls configuration.
    #[error("QUIC TLS configuration: {0}")]
    Quic(String),
}

/// A set of peer keys allowed to connect; shared and changeable at run time.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    keys: Arc<RwLock<HashSet<PeerId>>>,
    refused: Arc<AtomicU64>,
}

impl Allowlist {
    /// An allowlist holding `keys`.
    pub fn new(keys: impl IntoIterator<Item = PeerId>) -> Self {
        Self {
            keys: Arc::new(RwLock::new(keys.into_iter().collect())),
            refused: Arc::default(),
        }
    }

    /// Allows `peer`. Returns false if it was already allowed.
    pub fn insert(&self, peer: PeerId) -> bool {
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer)
    }

    /// Stops allowing `peer`. Returns false if it was not allowed.
    pub fn remove(&self, peer: &PeerId) -> bool {
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(peer)
    }

    /// Whether `peer` is allowed.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(peer)
    }

    /// How many client keys were refused because they are not on the list
    /// (shared by every clone).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Which client keys a node accepts connections from.
#[derive(Clone, Debug)]
pub enum AcceptPolicy {
    /// Only keys in the allowlist.
    Allowlist(Allowlist),
    /// Any valid Ed25519 key (bootstrap nodes serving unknown peers).
    AnyKey,
}

impl AcceptPolicy {
    /// Whether a client presenting `peer` may connect.
    pub fn allows(&self, peer: &PeerId) -> bool {
        match self {
            Self::Allowlist(list) => list.contains(peer),
            Self::AnyKey => true,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified_key(
    identity: &Identity,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let der = identity.to_pkcs8_der();
    let signing = provider
        .key_provider
        .load_private_key(PrivatePkcs8KeyDer::from(der.to_vec()).into())?;
    let spki = CertificateDer::from(identity.peer_id().to_spki_der());
    Ok(Arc::new(CertifiedKey::new(vec![spki], signing)))
}

/// Builds the QUIC server crypto config: presents our key, requires a client
/// key accepted by `policy`; accepts [`ALPN_DATA`] if `data_plane`.
pub fn server_config(
    identity: &Identity,
    policy: AcceptPolicy,
    data_plane: bool,
) -> Result<quinn::crypto::rustls::QuicServerConfig, TlsError> {
    let provider = provider();
    let key = certified_key(identity, &provider)?;
    let verifier = Arc::new(ClientKeyVerifier {
        policy,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(key)));
    config.alpn_protocols = alpn_protocols(data_plane);
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    quinn::crypto::rustls::QuicServerConfig::try_from(config)
        .map_err(|e| TlsError::Quic(e.to_string()))
}

/// The key a server presented during one client handshake, recorded by the
/// client verifier so that callers can report a mismatch.
#[derive(Clone, Debug, Default)]
pub struct PresentedKey(Arc<Mutex<Option<PeerId>>>);

impl PresentedKey {
    /// The key the server presented, if the handshake got that far.
    pub fn get(&self) -> Option<PeerId> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, peer: PeerId) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(peer);
    }
}

/// Builds the QUIC client crypto config for dialing `expected`: presents our
/// key and accepts only a server presenting `expected`. The key the server
/// actually presented is written to the returned [`PresentedKey`]. Offers
/// [`ALPN_DATA`] if `data_plane`.
pub fn client_config(
    identity: &Identity,
    expected: PeerId,
    data_plane: bool,
) -> Result<(quinn::crypto::rustls::QuicClientConfig, PresentedKey), TlsError> {
    let provider = provider();
    let key = certified_key(identity, &provider)?;
    let presented = PresentedKey::default();
    let verifier = Arc::new(ServerKeyVerifier {
        expected,
        presented: presented.clone(),
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(key)));
    config.alpn_protocols = alpn_protocols(data_plane);
    config.resumption = Resumption::disabled();
    config.enable_sni = false;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(config)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    Ok((quic, presented))
}

/// Extracts the authenticated peer key from a handshake's peer identity
/// (what `quinn::Connection::peer_identity` returns).
pub fn peer_id_of(identity: &dyn std::any::Any) -> Option<PeerId> {
    let certs = identity.downcast_ref::<Vec<CertificateDer<'static>>>()?;
    match certs.as_slice() {
        [spki] => PeerId::from_spki_der(spki).ok(),
        _ => None,
    }
}

/// Parses the single raw public key a peer presented.
fn presented_key(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<PeerId, rustls::Error> {
    if !intermediates.is_empty() {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ));
    }
    PeerId::from_spki_der(end_entity)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))
}

fn verify_signature(
    message: &[u8],
    key: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls13_signature_with_raw_key(
        message,
        &SubjectPublicKeyInfoDer::from(key.as_ref()),
        dss,
        algorithms,
    )
}

/// Client side: accepts only the expected server key.
#[derive(Debug)]
struct ServerKeyVerifier {
    expected: PeerId,
    presented: PresentedKey,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ServerKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let peer = presented_key(end_entity, intermediates)?;
        self.presented.set(peer);
        if peer != self.expected {
            tracing::debug!(expected = %self.expected, presented = %peer, "server presented the wrong key");
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// Server side: accepts client keys allowed by the policy.
#[derive(Debug)]
struct ClientKeyVerifier {
    policy: AcceptPolicy,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientKeyVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let peer = presented_key(end_entity, intermediates)?;
        if !self.policy.allows(&peer) {
            if let AcceptPolicy::Allowlist(list) = &self.policy {
                list.refused.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(presented = %peer, "refused a client key that is not allowed");
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}
