//! `ca init`, `ca sign`, `ca show`: a network's CA and host certificates.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use antq::cert::{self, CaKey};
use antq::identity::PeerId;
use antq::proto::cert::CertBody;
use anyhow::{bail, Context as _};
use clap::Subcommand;
use ipnet::IpNet;

/// What `antq-tun ca` does.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a network CA: write its private key to a new file (mode 0600,
    /// never overwritten) and print its public key, which every host lists
    /// in `[network] ca`. Keep the file offline.
    Init {
        /// The network's name (printable ASCII, no spaces, up to 63).
        #[arg(long, value_name = "NET")]
        name: String,
        /// The CA key file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Sign a host certificate: binds the host's public key to its name,
    /// overlay addresses, groups and routes, for a limited time.
    Sign {
        /// The CA key file (from `ca init`).
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
        /// The host's public key (`antq-tun pubkey < host.key`).
        #[arg(long, value_name = "KEY")]
        pubkey: PeerId,
        /// The host's name, a DNS label (a-z, 0-9, '-'): peers find it as
        /// NAME.antq.
        #[arg(long)]
        name: String,
        /// An overlay address with the overlay's prefix length, e.g.
        /// 10.90.0.5/24 (repeatable: one IPv4 and one IPv6, say).
        #[arg(long, value_name = "ADDR/LEN", required = true)]
        address: Vec<IpNet>,
        /// A group the host belongs to (repeatable), for firewall rules.
        #[arg(long, value_name = "G")]
        group: Vec<String>,
        /// A network behind the host that it may route for (repeatable),
        /// e.g. 192.168.50.0/24.
        #[arg(long, value_name = "CIDR")]
        route: Vec<IpNet>,
        /// How long the certificate is valid from now: 365d, 12h, 90d...
        #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = humantime::parse_duration)]
        valid_for: Duration,
        /// The certificate file to create (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print every field of a certificate and whether it is valid now; exit
    /// non-zero when it is not (bad signature, expired, not yet valid, or
    /// not from one of the given CAs).
    Show {
        /// The certificate file.
        file: PathBuf,
        /// Also require it to come from this CA public key (repeatable).
        #[arg(long, value_name = "KEY")]
        ca: Vec<PeerId>,
    },
}

/// Runs an `antq-tun ca` command.
pub fn run(command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::Init { name, out } => init(&name, &out),
        CaCommand::Sign {
            ca,
            pubkey,
            name,
            address,
            group,
            route,
            valid_for,
            out,
        } => {
            let body = CertBody {
                network: String::new(),
                ca: [0; 32],
                host: *pubkey.as_bytes(),
                name,
                not_before: 0,
                not_after: 0,
                addresses: address,
                groups: group,
                routes: route,
            };
            sign(&ca, body, valid_for, &out)
        }
        CaCommand::Show { file, ca } => show(&file, &ca),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Refuses an existing output file before any work is done.
fn new_file(out: &Path, what: &str) -> anyhow::Result<()> {
    if out.exists() {
        bail!(
            "{} exists; {what} is never overwritten (choose another --out, or move the old file away)",
            out.display()
        );
    }
    Ok(())
}

fn init(name: &str, out: &Path) -> anyhow::Result<()> {
    new_file(out, "a CA key")?;
    let ca = CaKey::generate(name).context("--name")?;
    ca.save_new(out)?;
    errln!(
        "antq-tun: CA for network `{name}` written to {} (keep it offline); its public key, for `[network] ca` in every host's config:",
        out.display()
    );
    outln!("{}", ca.public())?;
    Ok(())
}

fn sign(ca: &Path, mut body: CertBody, valid_for: Duration, out: &Path) -> anyhow::Result<()> {
    new_file(out, "a certificate")?;
    let ca = CaKey::load(ca)?;
    let now = unix_now();
    body.not_before = now;
    body.not_after = now.saturating_add(valid_for.as_secs());
    if valid_for.as_secs() == 0 {
        bail!("--valid-for must be at least one second");
    }
    let cert = ca.sign(body).context("cannot certify this host")?;
    cert::save_certificate(&cert, out)?;
    errln!(
        "antq-tun: certificate for `{}` written to {}, valid until {}",
        cert.body.name,
        out.display(),
        time_text(cert.body.not_after)
    );
    Ok(())
}

fn time_text(unix: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix.min(253_402_300_799));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

fn show(file: &Path, cas: &[PeerId]) -> anyhow::Result<()> {
    let cert = cert::load_certificate(file)?;
    let b = &cert.body;
    let key = |bytes: &[u8; 32]| {
        PeerId::from_bytes(*bytes).map_or_else(|_| "(invalid key)".into(), |k| k.to_string())
    };
    outln!("network:    {}", b.network)?;
    outln!("ca:         {}", key(&b.ca))?;
    outln!("host key:   {}", key(&b.host))?;
    outln!("name:       {}", b.name)?;
    outln!(
        "addresses:  {}",
        list(b.addresses.iter().map(ToString::to_string))
    )?;
    outln!("groups:     {}", list(b.groups.iter().cloned()))?;
    outln!(
        "routes:     {}",
        list(b.routes.iter().map(ToString::to_string))
    )?;
    outln!("not before: {}", time_text(b.not_before))?;
    outln!("not after:  {}", time_text(b.not_after))?;
    // The signature is checked against the CA named in the certificate,
    // or against the given ones.
    let trusted: Vec<PeerId> = if cas.is_empty() {
        PeerId::from_bytes(b.ca).into_iter().collect()
    } else {
        cas.to_vec()
    };
    let now = unix_now();
    match cert::verify(&cert, &trusted, &[], now) {
        Ok(()) => {
            let days = (b.not_after - now) / 86_400;
            outln!("status:     valid now (signature verifies; expires in {days} days)")?;
            Ok(())
        }
        Err(e) => {
            outln!("status:     NOT VALID: {e}")?;
            bail!("{}: not valid: {e}", file.display())
        }
    }
}
