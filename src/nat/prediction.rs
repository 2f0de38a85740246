//! NAT mapping inference and port prediction.
//!
//! Input: [`Observation`]s — for one local socket (`base`), the address each
//! bootstrap server saw us as (`mapped`), in the order the servers were
//! contacted. Output:
//!
//! - [`infer_mapping`]: the RFC 4787 mapping behaviour. If every server saw
//!   the same mapped address the mapping is endpoint-independent. If servers
//!   sharing an IP (different ports) saw the same mapping but different IPs
//!   did not, it is address-dependent; otherwise address-and-port-dependent
//!   ("symmetric"). For dependent mappings the successive mapped ports are
//!   classified into a [`PortAllocation`] pattern: constant delta
//!   (sequential), small positive/negative increments (small random range) or
//!   fully random.
//! - [`predict_ports`]: for dependent mappings with a predictable pattern,
//!   the next `count` ports the NAT will likely allocate for *new*
//!   destinations, each with a confidence in `[0, 1]` (high for a constant
//!   delta confirmed by several observations, lower for small ranges, none
//!   for random allocation).
//!
//! Predictions assume the NAT allocates the next ports for our next new
//! destinations; the punch session therefore probes predicted candidates
//! first and in order (see [`super::punch`]).

use std::net::SocketAddr;

use super::addr::canonical;
use super::candidate::Candidate;

/// One bootstrap's observation of our local socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// The bootstrap server we sent to.
    pub server: SocketAddr,
    /// Our local socket address (the base).
    pub base: SocketAddr,
    /// The source address the server saw.
    pub mapped: SocketAddr,
}

/// How a NAT allocates public ports for new mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortAllocation {
    /// Constant increment `delta` between successive mappings.
    Sequential {
        /// Port increment between successive mappings (non-zero).
        delta: i32,
    },
    /// Increments within `[min_delta, max_delta]` (same sign, small).
    SmallRange {
        /// Smallest increment observed.
        min_delta: i32,
        /// Largest increment observed.
        max_delta: i32,
    },
    /// No usable pattern.
    Random,
}

/// Inferred NAT mapping behaviour (RFC 4787 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingBehaviour {
    /// Same mapping for every destination: hole punching is easy.
    EndpointIndependent,
    /// Mapping depends on the destination IP only.
    AddressDependent {
        /// Port allocation pattern for new mappings.
        pattern: PortAllocation,
    },
    /// Mapping depends on destination IP and port.
    Symmetric {
        /// Port allocation pattern for new mappings.
        pattern: PortAllocation,
    },
    /// Not enough observations.
    Unknown,
}

impl MappingBehaviour {
    /// A short name: `endpoint_independent`, `address_dependent`,
    /// `symmetric` or `unknown` (status output, metric labels).
    pub fn label(&self) -> &'static str {
        match self {
            MappingBehaviour::EndpointIndependent => "endpoint_independent",
            MappingBehaviour::AddressDependent { .. } => "address_dependent",
            MappingBehaviour::Symmetric { .. } => "symmetric",
            MappingBehaviour::Unknown => "unknown",
        }
    }

    /// The port allocation pattern, for dependent mappings.
    pub fn pattern(&self) -> Option<PortAllocation> {
        match self {
            MappingBehaviour::AddressDependent { pattern }
            | MappingBehaviour::Symmetric { pattern } => Some(*pattern),
            _ => None,
        }
    }
}

/// Tunables for [`predict_ports`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictionConfig {
    /// How many ports to predict.
    pub count: usize,
    /// Largest |increment| still considered "small range".
    pub max_small_delta: i32,
}

impl Default for PredictionConfig {
    fn default() -> Self {
        PredictionConfig {
            count: 8,
            max_small_delta: 16,
        }
    }
}

/// A predicted public address with a confidence in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictedPort {
    /// The predicted public address.
    pub addr: SocketAddr,
    /// The local socket the prediction is for.
    pub base: SocketAddr,
    /// Confidence in `[0, 1]`.
    pub confidence: f32,
}

impl PredictedPort {
    /// As a [`Candidate`] of kind `Predicted`.
    pub fn to_candidate(&self) -> Candidate {
        Candidate::predicted(self.addr, Some(self.base), self.confidence)
    }
}

/// Observations for the first base seen, canonicalised, in input order.
fn usable(observations: &[Observation]) -> Vec<Observation> {
    let Some(first) = observations.first() else {
        return Vec::new();
    };
    let base = canonical(first.base);
    observations
        .iter()
        .map(|o| Observation {
            server: canonical(o.server),
            base: canonical(o.base),
            mapped: canonical(o.mapped),
        })
        .filter(|o| o.base == base)
        .collect()
}

/// Classifies successive mapped ports (input order).
fn classify_ports(ports: &[u16], max_small_delta: i32) -> PortAllocation {
    let deltas: Vec<i32> = ports
        .windows(2)
        .map(|w| i32::from(w[1]) - i32::from(w[0]))
        .collect();
    let Some(&first) = deltas.first() else {
        return PortAllocation::Random;
    };
    if deltas.iter().any(|&d| d == 0 || d.abs() > max_small_delta) {
        return PortAllocation::Random;
    }
    if deltas.iter().all(|&d| d == first) {
        return PortAllocation::Sequential { delta: first };
    }
    if deltas.iter().all(|&d| d.signum() == first.signum()) {
        let min_delta = *deltas.iter().min().expect("non-empty");
        let max_delta = *deltas.iter().max().expect("non-empty");
        return PortAllocation::SmallRange {
            min_delta,
            max_delta,
        };
    }
    PortAllocation::Random
}

/// Infers the NAT mapping behaviour from bootstrap observations of one local
/// socket (only observations sharing the first observation's base are used;
/// duplicates of a server are ignored). Needs at least two distinct servers.
pub fn infer_mapping(observations: &[Observation]) -> MappingBehaviour {
    infer_with(observations, PredictionConfig::default().max_small_delta)
}

fn infer_with(observations: &[Observation], max_small_delta: i32) -> MappingBehaviour {
    let mut obs = usable(observations);
    let mut seen = Vec::new();
    obs.retain(|o| {
        if seen.contains(&o.server) {
            false
        } else {
            seen.push(o.server);
            true
        }
    });
    if obs.len() < 2 {
        return MappingBehaviour::Unknown;
    }
    if obs.iter().all(|o| o.mapped == obs[0].mapped) {
        return MappingBehaviour::EndpointIndependent;
    }
    let ip_changes = obs.iter().any(|o| o.mapped.ip() != obs[0].mapped.ip());
    let pattern = if ip_changes {
        // Address pooling "arbitrary": ports alone are meaningless.
        PortAllocation::Random
    } else {
        // Distinct mappings in order (an address-dependent NAT reuses one
        // mapping for servers sharing an IP).
        let mut ports: Vec<u16> = Vec::new();
        for o in &obs {
            if !ports.contains(&o.mapped.port()) {
                ports.push(o.mapped.port());
            }
        }
        classify_ports(&ports, max_small_delta)
    };
    // Same server IP, different port, same mapping ⇒ address-dependent.
    let mut same_ip_pair = false;
    let mut port_dependent = false;
    for (i, a) in obs.iter().enumerate() {
        for b in &obs[i + 1..] {
            if a.server.ip() == b.server.ip() {
                same_ip_pair = true;
                if a.mapped != b.mapped {
                    port_dependent = true;
                }
            }
        }
    }
    if same_ip_pair && !port_dependent {
        MappingBehaviour::AddressDependent { pattern }
    } else {
        MappingBehaviour::Symmetric { pattern }
    }
}

/// Predicts the next public addresses the NAT will allocate for new
/// destinations of the observed local socket. Empty for endpoint-independent,
/// unknown or random mappings. Ports never wrap outside `1..=65535`.
pub fn predict_ports(
    observations: &[Observation],
    config: &PredictionConfig,
) -> Vec<PredictedPort> {
    let behaviour = infer_with(observations, config.max_small_delta);
    let Some(pattern) = behaviour.pattern() else {
        return Vec::new();
    };
    let obs = usable(observations);
    let Some(last) = obs.last() else {
        return Vec::new();
    };
    let n_deltas = obs.len().saturating_sub(1);
    let ip = last.mapped.ip();
    let last_port = i32::from(last.mapped.port());
    let mut out = Vec::new();
    let mut push = |port: i32, confidence: f32| {
        if let Ok(port) = u16::try_from(port) {
            if port != 0 {
                out.push(PredictedPort {
                    addr: SocketAddr::new(ip, port),
                    base: last.base,
                    confidence: confidence.clamp(0.0, 1.0),
                });
            }
        }
    };
    match pattern {
        PortAllocation::Random => {}
        PortAllocation::Sequential { delta } => {
            // One confirming delta is weaker evidence than several.
            let start = if n_deltas >= 2 { 0.9 } else { 0.6 };
            for k in 1..=config.count as i32 {
                push(last_port + k * delta, start * 0.95f32.powi(k - 1));
            }
        }
        PortAllocation::SmallRange {
            min_delta,
            max_delta,
        } => {
            // Every port in the window may be hit; spread confidence.
            let width = (max_delta - min_delta + 1).max(1) as f32;
            let step = min_delta.signum();
            let start = 0.5 / width.sqrt();
            for k in 1..=config.count as i32 {
                push(last_port + k * step, start * 0.9f32.powi(k - 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(ports: &[u16]) -> Vec<Observation> {
        ports
            .iter()
            .enumerate()
            .map(|(i, &p)| Observation {
                server: SocketAddr::new(format!("198.51.100.{}", i + 1).parse().unwrap(), 3478),
                base: "192.168.1.2:5000".parse().unwrap(),
                mapped: SocketAddr::new("203.0.113.9".parse().unwrap(), p),
            })
            .collect()
    }

    #[test]
    fn unknown_with_one_server() {
        assert_eq!(infer_mapping(&obs(&[1000])), MappingBehaviour::Unknown);
        assert_eq!(infer_mapping(&[]), MappingBehaviour::Unknown);
        let mut o = obs(&[1000, 1001]);
        o[1].server = o[0].server;
        assert_eq!(infer_mapping(&o), MappingBehaviour::Unknown);
    }

    #[test]
    fn endpoint_independent() {
        assert_eq!(
            infer_mapping(&obs(&[5000, 5000, 5000])),
            MappingBehaviour::EndpointIndependent
        );
        assert!(predict_ports(&obs(&[5000, 5000]), &PredictionConfig::default()).is_empty());
    }

    #[test]
    fn sequential_delta() {
        let o = obs(&[40000, 40002, 40004]);
        assert_eq!(
            infer_mapping(&o),
            MappingBehaviour::Symmetric {
                pattern: PortAllocation::Sequential { delta: 2 }
            }
        );
        let p = predict_ports(&o, &PredictionConfig::default());
        assert_eq!(p.len(), 8);
        let ports: Vec<u16> = p.iter().map(|p| p.addr.port()).collect();
        assert_eq!(
            ports,
            vec![40006, 40008, 40010, 40012, 40014, 40016, 40018, 40020]
        );
        assert!(p[0].confidence >= 0.85);
        assert!(p.windows(2).all(|w| w[0].confidence > w[1].confidence));
        assert_eq!(p[0].to_candidate().confidence, Some(p[0].confidence));
    }

    #[test]
    fn sequential_single_delta_lower_confidence_and_negative() {
        let p = predict_ports(
            &obs(&[3000, 2999]),
            &PredictionConfig {
                count: 3,
                ..Default::default()
            },
        );
        let ports: Vec<u16> = p.iter().map(|p| p.addr.port()).collect();
        assert_eq!(ports, vec![2998, 2997, 2996]);
        assert!(p[0].confidence < 0.85 && p[0].confidence > 0.3);
    }

    #[test]
    fn small_range() {
        let o = obs(&[1000, 1002, 1005, 1006]);
        assert_eq!(
            infer_mapping(&o),
            MappingBehaviour::Symmetric {
                pattern: PortAllocation::SmallRange {
                    min_delta: 1,
                    max_delta: 3
                }
            }
        );
        let p = predict_ports(&o, &PredictionConfig::default());
        assert_eq!(p.len(), 8);
        assert_eq!(p[0].addr.port(), 1007);
        assert!(p[0].confidence < 0.5 && p[0].confidence > 0.0);
    }

    #[test]
    fn random() {
        let o = obs(&[1000, 53211, 8000]);
        assert_eq!(
            infer_mapping(&o),
            MappingBehaviour::Symmetric {
                pattern: PortAllocation::Random
            }
        );
        assert!(predict_ports(&o, &PredictionConfig::default()).is_empty());
        // Mixed signs are random too.
        let o = obs(&[1000, 1003, 1001]);
        assert_eq!(infer_mapping(&o).pattern(), Some(PortAllocation::Random));
    }

    #[test]
    fn address_dependent() {
        let mut o = obs(&[7000, 7000, 7001]);
        o[1].server = SocketAddr::new(o[0].server.ip(), 3479);
        assert_eq!(
            infer_mapping(&o),
            MappingBehaviour::AddressDependent {
                pattern: PortAllocation::Sequential { delta: 1 }
            }
        );
        let p = predict_ports(&o, &PredictionConfig::default());
        assert_eq!(p[0].addr.port(), 7002);
    }

    #[test]
    fn predictions_never_wrap() {
        let p = predict_ports(&obs(&[65533, 65534]), &PredictionConfig::default());
        let ports: Vec<u16> = p.iter().map(|p| p.addr.port()).collect();
        assert_eq!(ports, vec![65535]);
    }
}
