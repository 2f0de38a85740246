//! The names table: which overlay addresses `NAME.antq` stands for.
//!
//! Names come from three places; when two claim the same name, the first
//! of this list wins (and the others are not answered for that name):
//!
//! 1. our own name: the `name` of our network certificate, with our
//!    tunnel addresses;
//! 2. `[[peer]] name` in the config file, with that peer's host addresses
//!    (the /32 and /128 entries of its `allowed_ips`; the subnets it routes
//!    are not its addresses);
//! 3. network members: the name and addresses of each member's
//!    certificate. Two members with one name (a host given a new key keeps
//!    its name while the old certificate is still valid): the certificate
//!    issued last (`not_before`) wins, then the smaller key.
//!
//! The local operator's word (the config file) beats a certificate: a CA
//! cannot take a name the host's own config gives to a peer, nor ours.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::proto::cert::CertBody;
use crate::tunnel::config::TunnelConfig;

/// Name → addresses, names lower-case (see the module documentation for
/// where they come from).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Names {
    by_name: BTreeMap<String, Vec<IpAddr>>,
}

/// The names the config file gives: ours and the `[[peer]]`s'. A reload
/// may change them; the members' part is added by [`Names::build`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalNames {
    /// Our own name and tunnel addresses (with a network certificate).
    pub own: Option<(String, Vec<IpAddr>)>,
    /// Each named `[[peer]]`: its name and host addresses.
    pub peers: Vec<(String, Vec<IpAddr>)>,
}

impl LocalNames {
    /// The names `config` gives.
    pub fn from_config(config: &TunnelConfig) -> Self {
        let own = config.network.as_ref().map(|n| {
            (
                n.certificate.body.name.to_ascii_lowercase(),
                config.addresses.iter().map(IpNet::addr).collect(),
            )
        });
        let peers = config
            .peers
            .iter()
            .filter_map(|p| {
                let name = p.name.clone()?;
                let hosts = p
                    .allowed_ips
                    .iter()
                    .filter(|n| n.prefix_len() == n.max_prefix_len())
                    .map(IpNet::addr)
                    .collect();
                Some((name, hosts))
            })
            .collect();
        Self { own, peers }
    }
}

impl Names {
    /// The table of `local` names and the `members`' certificates.
    pub fn build<'a>(local: &LocalNames, members: impl IntoIterator<Item = &'a CertBody>) -> Self {
        let mut by_name = BTreeMap::new();
        for (name, addresses) in local.own.iter().chain(&local.peers) {
            by_name
                .entry(name.clone())
                .or_insert_with(|| addresses.clone());
        }
        // The winning certificate for each name not taken yet.
        let mut certified: BTreeMap<String, &CertBody> = BTreeMap::new();
        for body in members {
            let name = body.name.to_ascii_lowercase();
            if by_name.contains_key(&name) {
                continue;
            }
            let better = |held: &&CertBody| {
                (body.not_before, std::cmp::Reverse(body.host))
                    > (held.not_before, std::cmp::Reverse(held.host))
            };
            match certified.get(&name) {
                Some(held) if !better(held) => {}
                _ => {
                    certified.insert(name, body);
                }
            }
        }
        for (name, body) in certified {
            by_name.insert(name, body.addresses.iter().map(IpNet::addr).collect());
        }
        Self { by_name }
    }

    /// The addresses of `name` (lower-case, without `.antq`), if it is
    /// known (possibly none of them, for a peer without a host address).
    pub fn lookup(&self, name: &str) -> Option<&[IpAddr]> {
        self.by_name.get(name).map(Vec::as_slice)
    }

    /// How many names there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The names and their addresses, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[IpAddr])> {
        self.by_name.iter().map(|(n, a)| (n.as_str(), a.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(name: &str, host: u8, not_before: u64, addresses: &[&str]) -> CertBody {
        CertBody {
            network: "lab".into(),
            ca: [0; 32],
            host: [host; 32],
            name: name.into(),
            not_before,
            not_after: not_before + 86_400,
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            groups: Vec::new(),
            routes: vec!["192.168.9.0/24".parse().unwrap()],
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn own_beats_config_beats_members() {
        let local = LocalNames {
            own: Some(("me".into(), ips(&["10.90.0.1"]))),
            peers: vec![
                ("db".into(), ips(&["10.90.0.2", "fd90::2"])),
                ("me".into(), ips(&["10.90.0.9"])),
            ],
        };
        let members = [
            body("db", 1, 10, &["10.90.0.7/24"]),
            body("me", 2, 10, &["10.90.0.8/24"]),
            body("web", 3, 10, &["10.90.0.3/24", "fd90::3/64"]),
        ];
        let names = Names::build(&local, &members);
        assert_eq!(names.lookup("me"), Some(&ips(&["10.90.0.1"])[..]));
        assert_eq!(
            names.lookup("db"),
            Some(&ips(&["10.90.0.2", "fd90::2"])[..])
        );
        // A member's addresses, not its routes.
        assert_eq!(
            names.lookup("web"),
            Some(&ips(&["10.90.0.3", "fd90::3"])[..])
        );
        assert_eq!(names.lookup("nosuch"), None);
        assert_eq!(names.len(), 3);
    }

    #[test]
    fn between_members_the_newest_certificate_then_the_smaller_key_wins() {
        let old = body("db", 1, 10, &["10.90.0.2/24"]);
        let new = body("db", 9, 20, &["10.90.0.5/24"]);
        let tie = body("db", 5, 20, &["10.90.0.6/24"]);
        for order in [[&old, &new, &tie], [&tie, &new, &old], [&new, &old, &tie]] {
            let names = Names::build(&LocalNames::default(), order);
            assert_eq!(names.lookup("db"), Some(&ips(&["10.90.0.6"])[..]));
        }
        let names = Names::build(&LocalNames::default(), [&old, &new]);
        assert_eq!(names.lookup("db"), Some(&ips(&["10.90.0.5"])[..]));
    }
}
