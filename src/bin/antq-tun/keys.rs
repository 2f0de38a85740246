//! `keygen` and `pubkey`.

use std::io::Read as _;
use std::path::Path;

use antq::identity::Identity;
use anyhow::Context as _;

/// Prints a new private key; optionally saves it to a new 0600 file.
pub fn keygen(out: Option<&Path>) -> anyhow::Result<()> {
    let identity = Identity::generate();
    if let Some(path) = out {
        identity.save_new(path)?;
    }
    outln!("{}", identity.to_base64().as_str())?;
    Ok(())
}

/// Reads a private key on stdin and prints the public key.
pub fn pubkey() -> anyhow::Result<()> {
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the private key from stdin")?;
    let identity = Identity::from_base64(&text)
        .context("stdin does not hold a private key (expected 44 base64 characters, as printed by `antq-tun keygen`)")?;
    outln!("{}", identity.peer_id())?;
    Ok(())
}
