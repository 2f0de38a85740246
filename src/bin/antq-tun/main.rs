//! `antq-tun`: the antq command line.

mod ca;
mod keys;
mod netcheck;
mod run;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// antq: a peer-to-peer QUIC overlay network and VPN tunnel.
#[derive(Debug, Parser)]
#[command(name = "antq-tun", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a new private key and print it (base64) on stdout.
    Keygen {
        /// Also write the key to this new file, created with mode 0600
        /// (refuses to overwrite an existing file).
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Read a private key (base64) on stdin and print its public key.
    Pubkey,
    /// Bring the tunnel up and run it in the foreground until SIGINT/SIGTERM
    /// (Windows: Ctrl-C, Ctrl-Break, console close) or `antq-tun down`; then
    /// remove the device and routes and exit 0.
    Up {
        /// The tunnel's config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Stop the running tunnel of a config file.
    Down {
        /// The tunnel's config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Show the running tunnels: interface, addresses, and per peer the key,
    /// allowed IPs, path (direct/relay/none), remote address, RTT, bytes
    /// in/out and last handshake; and the running bootstraps: peers, relays,
    /// limits and what they refused, by reason.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Only this interface (or bootstrap: `bootstrap-PORT`, or
        /// `bootstrap-IP-PORT` for one listening on a single address).
        #[arg(short, long, value_name = "NAME")]
        interface: Option<String>,
    },
    /// Run a bootstrap / coordinator / relay node in the foreground.
    Bootstrap {
        /// The bootstrap's config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Manage a network CA and host certificates (mesh membership without
    /// listing every peer).
    Ca {
        #[command(subcommand)]
        command: ca::CaCommand,
    },
    /// Print this host's addresses as seen by each bootstrap and the NAT
    /// mapping behaviour inferred from them.
    Netcheck {
        /// Take the key and the bootstraps from this tunnel config.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// A bootstrap to ask, as PUBLICKEY@IP:PORT (repeatable).
        #[arg(short, long, value_name = "KEY@ADDR")]
        bootstrap: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen { out } => keys::keygen(out.as_deref()),
        Command::Pubkey => keys::pubkey(),
        Command::Up { config } => run::up(&config),
        Command::Down { config } => run::down(&config),
        Command::Status { json, interface } => status::status(json, interface.as_deref()),
        Command::Bootstrap { config } => run::bootstrap(&config),
        Command::Ca { command } => ca::run(command),
        Command::Netcheck {
            config,
            bootstrap,
            json,
        } => netcheck::netcheck(config.as_deref(), &bootstrap, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("antq-tun: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default `info`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// A multi-threaded tokio runtime: the bootstrap, which serves many peers
/// at once.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// A single-threaded tokio runtime: the tunnel and the short commands. The
/// tunnel's datapath hands every packet between tasks (device reader, QUIC
/// connection driver, endpoint driver, datagram reader); on one thread
/// those hand-overs are queue pushes, on several they are cross-thread
/// wake-ups and contention on the connection's lock. Measured on the
/// 2-core test machine (scripts/bench.sh, veth): TCP 1.5 Gbit/s on one
/// thread against 0.4-0.5 Gbit/s with offload on a multi-threaded runtime
/// (1.1-1.2 Gbit/s without offload); ping RTT the same.
fn local_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
