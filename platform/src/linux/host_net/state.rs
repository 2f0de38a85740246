//! The state file of [`super`]: one change a line, tab-separated
//! (`sysctl\tPATH\tOLD`, `nft\tNAME`, `rule\tFAMILY\tPRIORITY`).

use crate::host_net::HostChange;

/// The file's text for `changes`.
pub(super) fn render_state(changes: &[HostChange]) -> String {
    let mut out = String::new();
    for c in changes {
        match c {
            HostChange::Sysctl { path, old } => out.push_str(&format!("sysctl\t{path}\t{old}\n")),
            HostChange::NftTable { name } => out.push_str(&format!("nft\t{name}\n")),
            HostChange::Rule { family, priority } => {
                out.push_str(&format!("rule\t{family}\t{priority}\n"))
            }
        }
    }
    out
}

/// Reads [`render_state`]'s format back; lines it does not understand are
/// skipped (the file is ours, in a root-only directory).
pub(super) fn parse_state(text: &str) -> Vec<HostChange> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            match (f.next()?, f.next(), f.next(), f.next()) {
                ("sysctl", Some(path), Some(old), None) if safe_sysctl(path) => {
                    Some(HostChange::Sysctl {
                        path: path.to_owned(),
                        old: old.to_owned(),
                    })
                }
                ("nft", Some(name), None, None) => Some(HostChange::NftTable {
                    name: name.to_owned(),
                }),
                ("rule", Some(family), Some(priority), None) => Some(HostChange::Rule {
                    family: family.parse().ok().filter(|f| *f == 4 || *f == 6)?,
                    priority: priority.parse().ok()?,
                }),
                _ => None,
            }
        })
        .collect()
}

/// A sysctl path we may write back: under `net/`, no `..`.
pub(super) fn safe_sysctl(path: &str) -> bool {
    path.starts_with("net/")
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != ".." && p != ".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_net::RULE_PRIORITY_MAIN;

    #[test]
    fn state_round_trips_and_refuses_strange_lines() {
        let changes = vec![
            HostChange::Sysctl {
                path: "net/ipv6/conf/eth0/accept_ra".into(),
                old: "1".into(),
            },
            HostChange::Sysctl {
                path: "net/ipv4/ip_forward".into(),
                old: "0".into(),
            },
            HostChange::NftTable {
                name: "antq-antq0".into(),
            },
            HostChange::Rule {
                family: 6,
                priority: RULE_PRIORITY_MAIN,
            },
        ];
        assert_eq!(parse_state(&render_state(&changes)), changes);
        let odd = "sysctl\t../etc/passwd\tx\nsysctl\tnet/../../x\t1\nrule\t5\t1\nrule\t4\tx\n\
                   nft\ta\tb\nwhat\n\nrule\t4\t32760\n";
        assert_eq!(
            parse_state(odd),
            vec![HostChange::Rule {
                family: 4,
                priority: 32760
            }]
        );
    }
}
