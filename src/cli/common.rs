//! What every client command shares: the `--bootstrap-server` flag, `-X key=value` parsing,
//! running a command on a one-shard executor, and turning its outcome into an exit code with
//! a one-line `Error: ...` on stderr.

use std::future::Future;

use clap::Args;

use crate::client::{Client, ClientConfig, ClientError};
use crate::runtime;

/// Where the cluster is.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Broker(s) to start from, as host:port[,host:port...]
    #[arg(
        long = "bootstrap-server",
        short = 'b',
        env = "SLUICE_BROKERS",
        default_value = "localhost:9092",
        value_name = "HOST:PORT"
    )]
    pub bootstrap_server: String,
}

impl ConnectArgs {
    pub fn client_config(&self) -> Result<ClientConfig, ClientError> {
        ClientConfig::with_bootstrap(&self.bootstrap_server)
    }
}

/// Connects to the cluster named by `config`.
pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
    Client::connect(config).await
}

/// Parses `key=value` (the value may contain '=').
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got '{s}'")),
    }
}

/// Runs a client command to completion and returns the process exit code: 0, or 1 after
/// printing `Error: <one line>`.
pub fn run<F>(command: F) -> i32
where
    F: Future<Output = anyhow::Result<()>>,
{
    init_client_logging();
    match runtime::block_on(command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {}", one_line(&e));
            1
        }
    }
}

/// The error and its causes on one line, without repeating a cause the message already
/// contains.
fn one_line(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text = format!("{text}: {c}");
        }
    }
    text.replace('\n', " ")
}

/// Client commands log warnings and errors only, unless SLUICE_LOG says otherwise.
fn init_client_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_keeps_equals_signs_in_the_value() {
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(key_value("novalue").is_err());
        assert!(key_value("=x").is_err());
    }

    #[test]
    fn causes_are_joined_on_one_line() {
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&e), "outer: inner");
    }
}
