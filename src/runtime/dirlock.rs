//! An exclusive lock on the data directory (Kafka's `.lock`), so two brokers never share one.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

/// Held for the broker's lifetime; the kernel releases it when the process exits.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!(
                    "data directory {} is locked by another sluice process",
                    dir.display()
                ),
            ));
        }
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = DirLock::acquire(dir.path()).unwrap();
        let second = DirLock::acquire(dir.path());
        assert!(second.is_err());
    }
}
