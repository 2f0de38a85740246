//! `antq-tun`: the antq command line.

// Output goes through `output` (`outln!`, `errln!`), which ends a command
// quietly when stdout is a closed pipe instead of panicking.
#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod output;

mod ca;
mod docs;
mod keys;
mod netcheck;
mod ping;
mod run;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// antq: a peer-to-peer QUIC overlay network and VPN tunnel.
///
/// A tunnel (`up`) carries the IP packets of a TUN device as QUIC datagrams
/// to the peer that owns their destination, directly when a hole can be
/// punched through the NATs between them, through a bootstrap node's relay
/// when not; peers are named by their Ed25519 public keys (`keygen`,
/// `pubkey`). A bootstrap (`bootstrap`) tells hosts their public addresses,
/// coordinates hole punching and relays.
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
        /// Send all traffic without a more specific route through this
        /// peer (its key), overriding `exit_node` in the file. The peer
        /// needs `exit = true`.
        #[arg(long, value_name = "KEY")]
        exit_node: Option<String>,
    },
    /// Re-read a running tunnel's config file and apply what changed
    /// (peers, allowed IPs, bootstraps, trusted CAs, revocations, a
    /// renewed certificate) without dropping anything that did not change. A config
    /// with errors, or with a change that needs a restart, is refused and
    /// the running one stays. SIGHUP to the `up` process does the same.
    Reload {
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
    /// Ping a peer through a running tunnel, above QUIC (whatever its
    /// firewall lets through): one line per reply with the path it took
    /// (direct with the peer's address, or relay via which bootstrap) and
    /// the round trip. Exits 0 when a reply came (with --until-direct: a
    /// direct one), 1 otherwise.
    Ping(ping::PingArgs),
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
    /// Print this host's addresses as seen by each bootstrap, the NAT
    /// mapping behaviour inferred from them, and which port mapping
    /// protocols the default gateway answers (PCP, NAT-PMP, UPnP IGD: a
    /// short test mapping by each, removed at once).
    ///
    /// Each bootstrap is asked on its main port and on its observe port
    /// (which it announces): one bootstrap is enough to tell an
    /// endpoint-independent mapping from a symmetric one.
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
    /// Print the completion script of a shell on stdout.
    ///
    /// The Debian package installs them for bash, zsh and fish; by hand,
    /// e.g. `antq-tun completions bash >
    /// ~/.local/share/bash-completion/completions/antq-tun`.
    Completions {
        /// The shell.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (antq-tun.1 and one per subcommand) into a
    /// directory.
    ///
    /// The Debian package has them already; by hand, e.g. `antq-tun
    /// manpages /usr/local/share/man/man1`.
    Manpages {
        /// The directory (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen { out } => keys::keygen(out.as_deref()),
        Command::Pubkey => keys::pubkey(),
        Command::Up { config, exit_node } => run::up(&config, exit_node.as_deref()),
        Command::Down { config } => run::down(&config),
        Command::Reload { config } => run::reload(&config),
        Command::Status { json, interface } => status::status(json, interface.as_deref()),
        Command::Bootstrap { config } => run::bootstrap(&config),
        Command::Ping(args) => match ping::ping(&args) {
            Ok(true) => Ok(()),
            // The lines printed say what happened.
            Ok(false) => return ExitCode::FAILURE,
            Err(error) => Err(error),
        },
        Command::Ca { command } => ca::run(command),
        Command::Netcheck {
            config,
            bootstrap,
            json,
        } => netcheck::netcheck(config.as_deref(), &bootstrap, json),
        Command::Completions { shell } => docs::completions(shell),
        Command::Manpages { dir } => docs::manpages(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output has gone (`| head`): see `output`.
        Err(error) if output::is_stdout_closed(&error) => ExitCode::SUCCESS,
        Err(error) => {
            errln!("antq-tun: error: {error:#}");
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
