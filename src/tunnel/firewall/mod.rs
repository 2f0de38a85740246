//! The inbound firewall (sans-IO): which packets from peers reach the TUN
//! device.
//!
//! - Packets this host sends start or refresh a flow in the connection
//!   table ([`Firewall::outbound`]); replies on those flows pass without a
//!   rule, and so do ICMP errors quoting one of them (path MTU discovery
//!   keeps working).
//! - Other inbound packets pass if a rule matches (first match, counted),
//!   else per `default_inbound`.
//! - Fragments: the first fragment of a datagram carries the ports and is
//!   judged; the later ones get its verdict (remembered briefly, bounded). A
//!   later fragment whose first was never seen is dropped and counted.
//!
//! No allocation per packet: the flow is read in place, the tables are
//! bounded hash maps.

pub mod conntrack;
pub mod flow;
pub mod rules;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use conntrack::Conntrack;
pub use flow::{parse, Flow, Fragment};
pub use rules::{FirewallConfig, Proto, Rule, Sender, Source};

/// Verdicts on later fragments are kept this long.
pub const FRAGMENT_MEMORY: Duration = Duration::from_secs(30);
/// Most datagrams whose fragment verdicts are kept.
pub const MAX_FRAGMENTED: usize = 4096;

/// Why a packet was dropped (or `Accepted` with how).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passed: rule `n` matched.
    Rule(usize),
    /// Passed: a reply on a flow we started, or an ICMP error about one.
    Tracked,
    /// Passed by `default_inbound = "allow"`.
    DefaultAllow,
    /// Dropped: no rule matched and the default is deny.
    DefaultDeny,
    /// Dropped: a later fragment of a datagram whose first fragment was
    /// dropped or never seen.
    Fragment,
    /// Dropped: not a packet the firewall could read.
    Malformed,
}

impl Verdict {
    /// Whether the packet passes.
    pub fn passes(self) -> bool {
        matches!(self, Self::Rule(_) | Self::Tracked | Self::DefaultAllow)
    }
}

/// Counters: per rule (packets passed), and drops by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FirewallCounters {
    /// Packets each rule let in, by rule index.
    pub rule_hits: Vec<u64>,
    /// Replies and ICMP errors passed by the connection table.
    pub tracked: u64,
    /// Packets passed by the default.
    pub default_allowed: u64,
    /// Packets dropped by the default.
    pub default_denied: u64,
    /// Later fragments dropped.
    pub fragments_dropped: u64,
    /// Unreadable packets dropped.
    pub malformed: u64,
}

impl FirewallCounters {
    /// Every packet dropped.
    pub fn dropped(&self) -> u64 {
        self.default_denied + self.fragments_dropped + self.malformed
    }
}

/// One rule as `antq-tun status` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RuleReport {
    /// tcp, udp, icmp, any.
    pub proto: &'static str,
    /// A port, a range or any.
    pub port: String,
    /// The sources as written.
    pub from: Vec<String>,
    /// Packets it let in.
    pub hits: u64,
}

/// The firewall in `antq-tun status --json`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FirewallReport {
    /// allow or deny.
    pub default_inbound: &'static str,
    /// The rules with their counters.
    pub rules: Vec<RuleReport>,
    /// All counters.
    pub counters: FirewallCounters,
    /// Packets dropped in total.
    pub dropped: u64,
    /// Flows in the connection table.
    pub tracked_flows: usize,
    /// Flows not tracked because the table was full.
    pub tracking_refused: u64,
}

impl FirewallReport {
    /// Adds the firewall's metrics to `r` (scraped only with a `[firewall]`
    /// section). Rules are labelled by their index in the table, counted
    /// from 0 as `antq-tun status` prints them and as config errors name
    /// them (`firewall.inbound[0]`), with their protocol and port: one
    /// series per rule, and a reload starts the rules' counters again.
    pub fn collect(&self, r: &mut crate::metrics::Registry) {
        let c = &self.counters;
        let f = r.counter(
            "antq_tun_firewall_dropped_total",
            "Inbound packets the firewall dropped, by reason: default_deny (no rule \
             matched and default_inbound is deny), fragment (a later fragment whose \
             first fragment was dropped or never seen), malformed (not readable as \
             IP with its ports).",
        );
        for (reason, n) in [
            ("default_deny", c.default_denied),
            ("fragment", c.fragments_dropped),
            ("malformed", c.malformed),
        ] {
            f.int(&[("reason", reason)], n);
        }
        let f = r.counter(
            "antq_tun_firewall_passed_total",
            "Inbound packets the firewall let in without a rule, by reason: tracked \
             (a reply on a flow this host started, an ICMP error about one, or a \
             later fragment of a datagram let in), default_allow (no rule matched \
             and default_inbound is allow). Packets rules let in are in \
             antq_tun_firewall_rule_packets_total.",
        );
        f.int(&[("reason", "tracked")], c.tracked);
        f.int(&[("reason", "default_allow")], c.default_allowed);
        let f = r.counter(
            "antq_tun_firewall_rule_packets_total",
            "Inbound packets each firewall rule let in (first match), by rule index \
             (from 0, as antq-tun status prints it), protocol and port; a reload \
             starts them again.",
        );
        for (i, rule) in self.rules.iter().enumerate() {
            let index = i.to_string();
            f.int(
                &[
                    ("rule", &index),
                    ("proto", rule.proto),
                    ("port", &rule.port),
                ],
                rule.hits,
            );
        }
        r.gauge(
            "antq_tun_firewall_flows",
            "Flows in the firewall's connection table (started by this host; their \
             replies pass without a rule).",
        )
        .int(&[], self.tracked_flows as u64);
        r.gauge(
            "antq_tun_firewall_flows_limit",
            "Most flows the firewall's connection table holds.",
        )
        .int(&[], conntrack::MAX_FLOWS as u64);
        r.counter(
            "antq_tun_firewall_flows_refused_total",
            "Flows this host started that were not tracked because the connection \
             table was full of live flows (their replies meet the rules).",
        )
        .int(&[], self.tracking_refused);
    }
}

/// The firewall of one tunnel.
#[derive(Debug)]
pub struct Firewall {
    config: FirewallConfig,
    conntrack: Conntrack,
    /// (source, datagram id, protocol) → (passes, until).
    fragments: HashMap<(IpAddr, u32, u8), (bool, Instant)>,
    counters: FirewallCounters,
}

impl Firewall {
    /// A firewall with `config`.
    pub fn new(config: FirewallConfig) -> Self {
        let rules = config.inbound.len();
        Self {
            config,
            conntrack: Conntrack::new(),
            fragments: HashMap::new(),
            counters: FirewallCounters {
                rule_hits: vec![0; rules],
                ..FirewallCounters::default()
            },
        }
    }

    /// New rules (a reload): the connection table and fragment verdicts
    /// stay, so flows under way carry on; rule counters start again.
    pub fn set_config(&mut self, config: FirewallConfig) {
        self.counters.rule_hits = vec![0; config.inbound.len()];
        self.config = config;
    }

    /// The rules and their counters, for `antq-tun status`.
    pub fn report(&self) -> FirewallReport {
        let text = |r: &Rule| {
            let proto = match r.proto {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
                Proto::Icmp => "icmp",
                Proto::Any => "any",
            };
            let port = match r.ports {
                (0, u16::MAX) => "any".to_owned(),
                (lo, hi) if lo == hi => lo.to_string(),
                (lo, hi) => format!("{lo}-{hi}"),
            };
            let from = r
                .from
                .iter()
                .map(|s| match s {
                    Source::Any => "any".to_owned(),
                    Source::Group(g) => format!("group:{g}"),
                    Source::Peer(p) => format!("peer:{p}"),
                    Source::Cidr(n) => format!("cidr:{n}"),
                })
                .collect();
            (proto, port, from)
        };
        FirewallReport {
            default_inbound: if self.config.default_allow {
                "allow"
            } else {
                "deny"
            },
            rules: self
                .config
                .inbound
                .iter()
                .zip(&self.counters.rule_hits)
                .map(|(r, hits)| {
                    let (proto, port, from) = text(r);
                    RuleReport {
                        proto,
                        port,
                        from,
                        hits: *hits,
                    }
                })
                .collect(),
            counters: self.counters.clone(),
            dropped: self.counters.dropped(),
            tracked_flows: self.conntrack.len(),
            tracking_refused: self.conntrack.refused,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FirewallConfig {
        &self.config
    }

    /// The counters.
    pub fn counters(&self) -> &FirewallCounters {
        &self.counters
    }

    /// Flows in the connection table.
    pub fn tracked_flows(&self) -> usize {
        self.conntrack.len()
    }

    /// A packet this host sends to a peer (from the TUN device).
    pub fn outbound(&mut self, packet: &[u8], now: Instant) {
        if let Some(flow) = parse(packet) {
            if !matches!(flow.fragment, Fragment::Later { .. }) {
                self.conntrack.outbound(&flow, now);
            }
        }
    }

    /// Judges a packet `sender` sent us, at `now`, and counts it.
    pub fn inbound(&mut self, packet: &[u8], sender: &Sender<'_>, now: Instant) -> Verdict {
        let verdict = self.judge(packet, sender, now);
        let c = &mut self.counters;
        match verdict {
            Verdict::Rule(n) => c.rule_hits[n] += 1,
            Verdict::Tracked => c.tracked += 1,
            Verdict::DefaultAllow => c.default_allowed += 1,
            Verdict::DefaultDeny => c.default_denied += 1,
            Verdict::Fragment => c.fragments_dropped += 1,
            Verdict::Malformed => c.malformed += 1,
        }
        verdict
    }

    fn judge(&mut self, packet: &[u8], sender: &Sender<'_>, now: Instant) -> Verdict {
        let Some(flow) = parse(packet) else {
            return Verdict::Malformed;
        };
        if let Fragment::Later { id } = flow.fragment {
            return match self.fragments.get(&(flow.src, id, flow.proto)) {
                Some((true, until)) if *until > now => Verdict::Tracked,
                _ => Verdict::Fragment,
            };
        }
        let verdict = self.judge_whole(packet, &flow, sender, now);
        if let Fragment::First { id } = flow.fragment {
            if self.fragments.len() >= MAX_FRAGMENTED {
                self.fragments.retain(|_, (_, until)| *until > now);
            }
            if self.fragments.len() < MAX_FRAGMENTED {
                self.fragments.insert(
                    (flow.src, id, flow.proto),
                    (verdict.passes(), now + FRAGMENT_MEMORY),
                );
            }
        }
        verdict
    }

    fn judge_whole(
        &mut self,
        packet: &[u8],
        flow: &Flow,
        sender: &Sender<'_>,
        now: Instant,
    ) -> Verdict {
        if self.conntrack.is_reply(flow, now) {
            return Verdict::Tracked;
        }
        if flow.is_icmp_error() {
            if let Some(quoted) = flow::quoted(packet, flow) {
                if self.conntrack.knows(&quoted, now) {
                    return Verdict::Tracked;
                }
            }
        }
        if let Some(n) = self
            .config
            .inbound
            .iter()
            .position(|r| r.matches(flow, sender))
        {
            return Verdict::Rule(n);
        }
        if self.config.default_allow {
            Verdict::DefaultAllow
        } else {
            Verdict::DefaultDeny
        }
    }
}

#[cfg(test)]
mod tests;
