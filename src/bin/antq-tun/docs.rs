//! `completions` and `manpages`: shell completions and man pages, generated
//! from the clap definitions of [`super::Cli`] so that they cannot drift
//! from the program (`scripts/package.sh` runs both to fill the Debian
//! package).
//!
//! Man pages: one per subcommand (`antq-tun-up.1`, ...) beside
//! `antq-tun.1`, the layout of git and cargo and the one clap_mangen
//! renders: each page has its subcommand's synopsis, full description and
//! every option, `man antq-tun-up` goes straight to it, and `antq-tun.1`
//! lists the subcommands with what they do, then the exit status,
//! environment, files and privileges that all of them share.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

/// The program's name, as installed.
const BIN: &str = "antq-tun";

/// Prints the completion script for `shell`.
pub fn completions(shell: Shell) -> anyhow::Result<()> {
    let mut cmd = super::Cli::command();
    // Rendered into memory first: clap_complete panics when its writer
    // fails, and stdout may be a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut script);
    crate::output::write_all(&script)
}

/// Writes `antq-tun.1` and one page per (visible) subcommand into `dir`,
/// creating it, and prints the paths written.
pub fn manpages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    // One page per subcommand, and per subcommand of those (`ca init`
    // is `antq-tun-ca-init.1`).
    let subs: Vec<&clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    let nested = subs.iter().flat_map(|s| {
        s.get_subcommands()
            .filter(|n| !n.is_hide_set() && n.get_name() != "help")
    });
    for sub in subs.iter().copied().chain(nested) {
        let man = page(sub.clone());
        let mut text = Vec::new();
        man.render(&mut text)?;
        written.push(write_page(dir, &man.get_filename(), &text)?);
    }
    let man = page(cmd.clone());
    let mut text = Vec::new();
    man.render_title(&mut text)?;
    man.render_name_section(&mut text)?;
    man.render_synopsis_section(&mut text)?;
    man.render_description_section(&mut text)?;
    man.render_options_section(&mut text)?;
    man.render_subcommands_section(&mut text)?;
    text.write_all(shared_sections().render().as_bytes())?;
    man.render_version_section(&mut text)?;
    written.push(write_page(dir, &man.get_filename(), &text)?);
    for path in written {
        outln!("{}", path.display())?;
    }
    Ok(())
}

fn page(cmd: clap::Command) -> Man {
    Man::new(cmd)
        .manual("User Commands")
        .source(format!("{BIN} {}", env!("CARGO_PKG_VERSION")))
        .date(date())
}

/// The pages' date: `SOURCE_DATE_EPOCH` (reproducible builds; package.sh
/// sets it to the commit's time), else today. YYYY-MM-DD, UTC.
fn date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let (y, m, d) = civil_from_days(secs / 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days >= 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

fn write_page(dir: &Path, name: &str, text: &[u8]) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// EXIT STATUS, PRIVILEGES, ENVIRONMENT, FILES and SEE ALSO of `antq-tun.1`.
fn shared_sections() -> Roff {
    let ipc = antq::tunnel::ipc::LOCATION;
    let mut r = Roff::new();
    let para = |r: &mut Roff, text: &str| {
        r.text([roman(text)]);
    };
    let item = |r: &mut Roff, term: &str, text: &str| {
        r.control("TP", []);
        r.text([bold(term)]);
        r.text([roman(text)]);
    };

    r.control("SH", ["EXIT STATUS"]);
    item(
        &mut r,
        "0",
        "Success; also when stdout is closed before the output is complete \
         (for example when piped into head(1)): the command then stops quietly.",
    );
    item(&mut r, "1", "An error; the message is on stderr.");
    item(&mut r, "2", "A usage error (unknown subcommand or option).");

    r.control("SH", ["PRIVILEGES"]);
    para(
        &mut r,
        &format!(
            "up needs {} to create the TUN device, its addresses and routes. \
             status and down reach a running tunnel or bootstrap through its \
             control socket in {ipc}, which only root may open. The other \
             subcommands need no privilege.",
            antq_platform::REQUIRED_PRIVILEGE
        ),
    );
    r.control("PP", []);
    para(
        &mut r,
        "On Linux the capability can be given to the program instead, so \
         that a user who is not root can run up (optional, not done by the \
         package):",
    );
    r.control("RS", ["4"]);
    r.control("nf", []);
    r.text([bold("setcap cap_net_admin+ep /usr/bin/antq-tun")]);
    r.control("fi", []);
    r.control("RE", []);
    para(
        &mut r,
        &format!(
            "Every user who may run the file then may create tunnels and \
             routes: restrict it to a group first (chgrp GROUP, chmod 750). \
             Such an up creates the device, its addresses and routes and \
             carries traffic, provided the user may open /dev/net/tun (mode \
             0666 on a standard system; some containers make it root's only). \
             It runs without a control socket ({ipc} is root's), so status \
             and down do not reach it: stop it with SIGINT or SIGTERM. Hole \
             punching then sends its timed probes without real-time priority \
             (add cap_sys_nice to keep it). An upgrade of the package \
             replaces the file and drops the capability: run setcap again. \
             The systemd unit needs none of this: it runs as root, limited \
             to CAP_NET_ADMIN and CAP_SYS_NICE."
        ),
    );

    r.control("SH", ["ENVIRONMENT"]);
    item(
        &mut r,
        "RUST_LOG",
        "Log filter of up and bootstrap (stderr), e.g. debug or \
         antq=debug,info; default info.",
    );

    r.control("SH", ["FILES"]);
    item(
        &mut r,
        "/etc/antq/NAME.toml",
        "A tunnel config by convention, as the systemd unit reads it; its \
         format is in /usr/share/doc/antq/README.md.",
    );
    item(
        &mut r,
        "/usr/share/doc/antq/examples/",
        "Example tunnel (peer.toml) and bootstrap (bootstrap.toml) configs.",
    );
    item(
        &mut r,
        "/usr/lib/systemd/system/antq-tun@.service",
        "systemctl enable --now antq-tun@NAME runs up -c /etc/antq/NAME.toml.",
    );
    item(
        &mut r,
        &format!("{ipc}/NAME.NETNS.sock"),
        "The control socket of a running tunnel or bootstrap (status, down).",
    );

    r.control("SH", ["SEE ALSO"]);
    r.text([
        italic("systemctl"),
        roman("(1), "),
        italic("setcap"),
        roman("(8), "),
        italic("ip"),
        roman("(8); /usr/share/doc/antq/ (README.md, docs/troubleshooting.md, docs/security.md)"),
    ]);
    r
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_453), (2025, 12, 31));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }
}
