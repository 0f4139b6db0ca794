//! A broker that dies of a fault signal says where: its stderr carries the signal and a
//! backtrace, and it still dies of that signal (exit status and core dump unchanged).

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

#[test]
fn a_broker_killed_by_sigabrt_prints_a_backtrace_and_dies_of_the_signal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("broker.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["broker", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).expect("broker log"))
        .spawn()
        .expect("start sluice broker");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("ready line");
    assert!(ready.contains("ready"), "ready line: {ready}");

    let sent = Command::new("kill")
        .args(["-ABRT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = child.wait().expect("broker exit");

    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    let log = std::fs::read_to_string(&log_path).expect("broker log");
    assert!(log.contains("fatal signal 6 on thread"), "{log}");
    // The backtrace starts in the handler itself, so it names it.
    assert!(log.contains("install_crash_report"), "{log}");
}
