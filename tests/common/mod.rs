//! A test broker: the `sluice` binary on an ephemeral loopback port with its data in a
//! temporary directory, stopped with SIGTERM when dropped. A failing test prints its log.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Broker {
    pub child: Child,
    dir: tempfile::TempDir,
    pub addr: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The broker's own account of the run is the first thing a failure needs.
            let log = std::fs::read_to_string(self.dir.path().join("broker.log"));
            eprintln!("broker log:\n{}", log.unwrap_or_default());
        }
    }
}

/// Starts a broker and waits for its ready line.
pub fn start_broker() -> Broker {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["broker", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("broker.log")).expect("broker log"))
        .spawn()
        .expect("start sluice broker");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .expect("address on the ready line")
        .to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "ready line: {line}");
    Broker { child, dir, addr }
}
