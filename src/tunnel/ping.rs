//! `antq-tun ping`: finds the peer a target names (an overlay address, a
//! key, or a peer's name, `db1` or `db1.antq`, from the names table) and pings it above QUIC
//! ([`Overlay::ping`](crate::node::overlay::Overlay::ping)), so the answer
//! shows the path (direct or relay) whatever the firewall lets through.
//!
//! A running tunnel answers one ping per ipc request with a
//! [`PingAnswer`] (JSON); the command line sends them at its interval and
//! prints the lines.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::identity::PeerId;
use crate::node::overlay::{PathKind, PingError, PingReply};
use crate::proto::MemberQuery;

use super::device::{Datapath, Tunnel};

/// How often a target being looked up in the directory is looked for.
const RESOLVE_POLL: Duration = Duration::from_millis(20);

/// The answer to one ping, as the ipc sends it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PingAnswer {
    /// The peer's key, once the target is resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The member's name (from its certificate), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `direct` or `relay`, for a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The peer's address (direct) or the relaying bootstrap's (relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// `udp` or `tcp`, for a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// The round trip, for a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Why there is no reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The target names nothing this tunnel can reach: asking again will
    /// not help.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
}

impl PingAnswer {
    fn failed(peer: Option<&Resolved>, error: impl ToString, unknown: bool) -> Self {
        Self {
            peer: peer.map(|r| r.peer.to_string()),
            name: peer.and_then(|r| r.name.clone()),
            error: Some(error.to_string()),
            unknown,
            ..Self::default()
        }
    }
}

/// Pings on behalf of the ipc, off its loop (a ping may wait a second).
#[derive(Clone)]
pub struct Pinger {
    datapath: Arc<Datapath>,
}

impl std::fmt::Debug for Pinger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinger").finish_non_exhaustive()
    }
}

/// A target resolved to a peer.
struct Resolved {
    peer: PeerId,
    name: Option<String>,
}

/// What a target string names.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Key(PeerId),
    Address(IpAddr),
    Name(&'a str),
}

impl<'a> Target<'a> {
    fn parse(text: &'a str) -> Self {
        if let Ok(addr) = text.parse() {
            Self::Address(addr)
        } else if let Ok(key) = text.parse() {
            Self::Key(key)
        } else {
            Self::Name(text)
        }
    }
}

impl Tunnel {
    /// A handle that pings this tunnel's peers.
    pub fn pinger(&self) -> Pinger {
        Pinger {
            datapath: self.datapath.clone(),
        }
    }
}

impl Pinger {
    /// Resolves `target` and pings it, all within `timeout`.
    pub async fn ping(&self, target: &str, timeout: Duration) -> PingAnswer {
        let deadline = Instant::now() + timeout;
        let resolved = match self.resolve(Target::parse(target), deadline).await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match self.datapath.overlay.ping(&resolved.peer, left).await {
            Ok(reply) => answer(&resolved, reply),
            Err(error @ PingError::UnknownPeer(_)) => {
                PingAnswer::failed(Some(&resolved), error, true)
            }
            Err(error) => PingAnswer::failed(Some(&resolved), error, false),
        }
    }

    /// The peer `target` names. A key or address not known yet is looked
    /// up in the directory (with a `[network]`) until `deadline`.
    async fn resolve(&self, target: Target<'_>, deadline: Instant) -> Result<Resolved, PingAnswer> {
        let overlay = &self.datapath.overlay;
        let query = match target {
            Target::Key(peer) => MemberQuery::Key(*peer.as_bytes()),
            Target::Address(addr) => MemberQuery::Addr(addr),
            Target::Name(name) => {
                // The names table (`NAME.antq`): `[[peer]] name`s and the
                // members met, the same claim winning as in DNS.
                let label = name.trim_end_matches('.');
                let label = label.strip_suffix(".antq").unwrap_or(label);
                let label = label.to_ascii_lowercase();
                let routes = self.datapath.shared.routes.load();
                return self
                    .datapath
                    .shared
                    .names
                    .load()
                    .lookup(&label)
                    .and_then(|addrs| addrs.iter().find_map(|a| routes.lookup(*a).copied()))
                    .map(|peer| Resolved {
                        peer,
                        name: Some(label.clone()),
                    })
                    .ok_or_else(|| {
                        let why = format!(
                            "no peer named {name:?}: a target is an overlay address, a key, or \
                             a peer's name (`[[peer]] name`, or a network member met already)"
                        );
                        PingAnswer::failed(None, why, true)
                    });
            }
        };
        let mut asked = false;
        loop {
            if let Some(found) = self.known(&target) {
                return Ok(found);
            }
            if !asked && !overlay.look_up(query) {
                let why = match target {
                    Target::Address(addr) => format!("no peer owns {addr}"),
                    _ => "no such peer (not configured, not a member of our network)".to_owned(),
                };
                return Err(PingAnswer::failed(None, why, true));
            }
            asked = true;
            if Instant::now() + RESOLVE_POLL > deadline {
                return Err(PingAnswer::failed(
                    None,
                    "still looking it up in the directory",
                    false,
                ));
            }
            tokio::time::sleep(RESOLVE_POLL).await;
        }
    }

    /// The peer `target` names now, among the peers and members known.
    fn known(&self, target: &Target<'_>) -> Option<Resolved> {
        let peer = match target {
            Target::Key(peer) => self.datapath.overlay.is_peer(peer).then_some(*peer)?,
            Target::Address(addr) => *self.datapath.shared.routes.load().lookup(*addr)?,
            Target::Name(_) => return None,
        };
        let name = self
            .datapath
            .overlay
            .members()
            .into_iter()
            .find(|m| m.peer == peer)
            .map(|m| m.cert.body.name.clone());
        Some(Resolved { peer, name })
    }
}

fn answer(resolved: &Resolved, reply: PingReply) -> PingAnswer {
    let path = match reply.path {
        PathKind::Direct => "direct",
        PathKind::Relay => "relay",
        PathKind::None => "none",
    };
    let transport = match reply.transport {
        crate::socket::Transport::Udp => "udp",
        crate::socket::Transport::Tcp => "tcp",
    };
    PingAnswer {
        peer: Some(resolved.peer.to_string()),
        name: resolved.name.clone(),
        path: Some(path.to_owned()),
        via: Some(reply.via.to_string()),
        transport: Some(transport.to_owned()),
        rtt_ms: Some(reply.rtt.as_secs_f64() * 1000.0),
        error: None,
        unknown: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_addresses_keys_or_names() {
        let key = crate::identity::Identity::generate().peer_id();
        assert_eq!(
            Target::parse("10.90.0.2"),
            Target::Address("10.90.0.2".parse().unwrap())
        );
        assert_eq!(
            Target::parse("fd00::2"),
            Target::Address("fd00::2".parse().unwrap())
        );
        assert_eq!(Target::parse(&key.to_string()), Target::Key(key));
        assert_eq!(Target::parse("web-1"), Target::Name("web-1"));
    }

    #[test]
    fn answers_read_back_as_sent() {
        let a = PingAnswer {
            peer: Some("k".into()),
            path: Some("relay".into()),
            via: Some("198.18.0.1:7000".into()),
            transport: Some("udp".into()),
            rtt_ms: Some(1.5),
            ..PingAnswer::default()
        };
        let text = serde_json::to_string(&a).unwrap();
        assert!(!text.contains("unknown"), "{text}");
        assert_eq!(serde_json::from_str::<PingAnswer>(&text).unwrap(), a);
    }
}
