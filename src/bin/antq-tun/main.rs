//! `antq-tun`: the antq command line.

mod keys;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen { out } => keys::keygen(out.as_deref()),
        Command::Pubkey => keys::pubkey(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("antq-tun: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
