//! The nftables table of a tunnel's host changes (family `inet`, one per
//! interface), written with the `nft` program: the forwarding policy of a
//! gateway or exit node, its masquerade, and the connection marks that let
//! replies to the tunnel's marked sockets pass reverse-path checks.

use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use crate::host_net::{DefaultRoute, Forwarding};
use crate::PlatformError;

/// The table's name for interface `iface`: `antq-IFACE` (interface names
/// are letters, digits, `-`, `_`, `.`, which nft identifiers allow).
pub(super) fn table_name(iface: &str) -> String {
    format!("antq-{iface}")
}

/// What the forward chain needs to know besides [`Forwarding`]: whether we
/// turned forwarding on for a family (then everything else forwarded in
/// that family is dropped, as it was before).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TurnedOn {
    pub(super) v4: bool,
    pub(super) v6: bool,
}

fn set_of(subnets: &[(IpAddr, u8)], v4: bool) -> Option<String> {
    let items: Vec<String> = subnets
        .iter()
        .filter(|(a, _)| a.is_ipv4() == v4)
        .map(|(a, p)| format!("{a}/{p}"))
        .collect();
    (!items.is_empty()).then(|| format!("{{ {} }}", items.join(", ")))
}

/// The whole table, as `nft -f` takes it. Nothing in it depends on input
/// from the network: interface name, subnets and mark come from the
/// validated configuration.
pub(super) fn ruleset(
    iface: &str,
    forward: Option<&Forwarding>,
    turned_on: TurnedOn,
    route: Option<&DefaultRoute>,
) -> String {
    let table = table_name(iface);
    let mut out = format!("table inet {table} {{\n");
    if let Some(fw) = forward {
        let dev = format!("\"{iface}\"");
        out.push_str(
            "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n",
        );
        // Peer to peer through us: they meet directly or through a relay.
        out.push_str(&format!("\t\tiifname {dev} oifname {dev} counter drop\n"));
        let v4 = set_of(&fw.subnets, true);
        let v6 = set_of(&fw.subnets, false);
        if let Some(s) = &v4 {
            out.push_str(&format!("\t\tiifname {dev} ip daddr {s} accept\n"));
        }
        if let Some(s) = &v6 {
            out.push_str(&format!("\t\tiifname {dev} ip6 daddr {s} accept\n"));
        }
        if fw.exit {
            out.push_str(&format!("\t\tiifname {dev} accept\n"));
        } else {
            out.push_str(&format!("\t\tiifname {dev} counter drop\n"));
        }
        out.push_str(&format!(
            "\t\toifname {dev} ct state established,related accept\n"
        ));
        if let Some(s) = &v4 {
            out.push_str(&format!("\t\toifname {dev} ip saddr {s} accept\n"));
        }
        if let Some(s) = &v6 {
            out.push_str(&format!("\t\toifname {dev} ip6 saddr {s} accept\n"));
        }
        out.push_str(&format!("\t\toifname {dev} counter drop\n"));
        if turned_on.v4 {
            out.push_str("\t\tmeta nfproto ipv4 counter drop\n");
        }
        if turned_on.v6 {
            out.push_str("\t\tmeta nfproto ipv6 counter drop\n");
        }
        out.push_str("\t}\n");
        if fw.masquerade {
            out.push_str(
                "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n",
            );
            out.push_str(&format!(
                "\t\tiifname {dev} oifname != {dev} masquerade\n\t}}\n"
            ));
        }
    }
    if let Some(r) = route {
        // The mark of our sockets' packets is kept on their connection, and
        // put on the replies, so that a reverse-path check (with
        // src_valid_mark) finds the main table's route, not the tunnel's.
        let m = format!("{:#x}", r.mark);
        out.push_str(&format!(
            "\tchain mark_out {{\n\t\ttype filter hook postrouting priority mangle; policy accept;\n\
             \t\tmeta l4proto {{ tcp, udp }} meta mark {m} ct mark set meta mark\n\t}}\n"
        ));
        out.push_str(&format!(
            "\tchain mark_in {{\n\t\ttype filter hook prerouting priority mangle; policy accept;\n\
             \t\tmeta l4proto {{ tcp, udp }} ct mark {m} meta mark set ct mark\n\t}}\n"
        ));
    }
    out.push_str("}\n");
    out
}

fn nft_missing() -> PlatformError {
    PlatformError::DriverNotFound {
        driver: "nft",
        hint: "install the nftables package (Debian/Ubuntu: apt-get install nftables)".into(),
    }
}

/// Runs `nft -f -` with `script` on stdin.
pub(super) fn run(op: &'static str, script: &str) -> Result<(), PlatformError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => nft_missing(),
            _ => PlatformError::Io { op, source: e },
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|source| PlatformError::Io { op, source })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| PlatformError::Io { op, source })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(PlatformError::Io {
        op,
        source: std::io::Error::other(format!("nft: {}", stderr.trim())),
    })
}

/// Creates (or replaces) the table.
pub(super) fn install(iface: &str, ruleset_text: &str) -> Result<(), PlatformError> {
    let table = table_name(iface);
    // "add" makes the "delete" succeed whether or not it existed; the whole
    // script is one transaction.
    let script = format!("add table inet {table}\ndelete table inet {table}\n{ruleset_text}");
    run("install nftables table", &script)
}

/// Removes table `name` if it exists.
pub(super) fn remove(name: &str) -> Result<(), PlatformError> {
    run(
        "remove nftables table",
        &format!("add table inet {name}\ndelete table inet {name}\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_without_exit_forwards_to_its_subnets_only() {
        let fw = Forwarding {
            subnets: vec![("192.168.50.0".parse().unwrap(), 24)],
            exit: false,
            masquerade: true,
            v4: true,
            v6: false,
        };
        let text = ruleset(
            "antq0",
            Some(&fw),
            TurnedOn {
                v4: true,
                v6: false,
            },
            None,
        );
        assert!(text.starts_with("table inet antq-antq0 {\n"));
        assert!(text.contains("iifname \"antq0\" ip daddr { 192.168.50.0/24 } accept\n"));
        assert!(text.contains("iifname \"antq0\" counter drop\n"));
        assert!(!text.contains("iifname \"antq0\" accept"));
        assert!(!text.contains("ip6 daddr"));
        assert!(text.contains("oifname \"antq0\" ip saddr { 192.168.50.0/24 } accept\n"));
        assert!(text.contains("meta nfproto ipv4 counter drop"));
        assert!(!text.contains("meta nfproto ipv6"));
        assert!(text.contains("iifname \"antq0\" oifname != \"antq0\" masquerade"));
        assert!(!text.contains("mark_in"));
    }

    #[test]
    fn exit_node_accepts_everything_from_the_tunnel() {
        let fw = Forwarding {
            subnets: vec![],
            exit: true,
            masquerade: false,
            v4: true,
            v6: true,
        };
        let text = ruleset("t1", Some(&fw), TurnedOn::default(), None);
        assert!(text.contains("iifname \"t1\" accept\n"));
        assert!(!text.contains("daddr"));
        assert!(!text.contains("masquerade"));
        assert!(!text.contains("nfproto"));
    }

    #[test]
    fn default_route_marks_connections() {
        let r = DefaultRoute {
            mark: 0x6171,
            v4: true,
            v6: true,
        };
        let text = ruleset("antq0", None, TurnedOn::default(), Some(&r));
        assert!(!text.contains("chain forward"));
        assert!(text.contains("meta mark 0x6171 ct mark set meta mark"));
        assert!(text.contains("ct mark 0x6171 meta mark set ct mark"));
    }
}
