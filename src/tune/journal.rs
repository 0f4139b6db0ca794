//! Applying findings, and undoing them: before a file is changed the value to restore is
//! saved in a journal (JSON), so `sluice tune undo` puts back what `apply` replaced, in
//! reverse order, and a second `apply` keeps the first one's originals.
//! Also the real [`HostFs`]: files under a root directory (`/` on a host).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::host::{Finding, HostFs, Status};

/// Where `apply` keeps what `undo` needs.
pub const DEFAULT_JOURNAL: &str = "/var/lib/sluice/tune-undo.json";

/// The host's files, under `root` (`/`; another directory for tests).
pub struct RootFs {
    root: PathBuf,
}

impl RootFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn real(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

impl HostFs for RootFs {
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.real(path)).ok()
    }

    fn list(&self, dir: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.real(dir)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn canonical(&self, path: &str) -> Option<String> {
        let real = std::fs::canonicalize(self.real(path)).ok()?;
        let root = std::fs::canonicalize(&self.root).ok()?;
        let inside = real.strip_prefix(&root).ok()?;
        Some(format!("/{}", inside.display()))
    }

    fn write(&self, path: &str, value: &str) -> std::io::Result<()> {
        let real = self.real(path);
        if let Some(dir) = real.parent().filter(|d| !d.exists()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&real, value)
            .map_err(|e| std::io::Error::new(e.kind(), format!("writing {value:?} to {path}: {e}")))
    }

    fn remove(&self, path: &str) -> std::io::Result<()> {
        std::fs::remove_file(self.real(path))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    path: String,
    /// `None`: the file did not exist; undo removes it.
    restore: Option<String>,
}

fn load(journal: &Path) -> std::io::Result<Vec<Entry>> {
    match std::fs::read_to_string(journal) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            std::io::Error::other(format!(
                "undo journal {} is damaged: {e}",
                journal.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn save(journal: &Path, entries: &[Entry]) -> std::io::Result<()> {
    if let Some(dir) = journal.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(entries).map_err(std::io::Error::other)?;
    let tmp = journal.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, journal)
}

/// Makes every write of the findings that would change something; returns the paths written.
/// Each original value is in the journal before its file changes.
pub fn apply(
    fs: &dyn HostFs,
    findings: &[Finding],
    journal: &Path,
) -> std::io::Result<Vec<String>> {
    let mut entries = load(journal)?;
    let mut written = Vec::new();
    let writes = findings
        .iter()
        .filter(|f| f.status == Status::WouldChange)
        .flat_map(|f| f.writes.iter());
    for w in writes {
        if !entries.iter().any(|e| e.path == w.path) {
            entries.push(Entry {
                path: w.path.clone(),
                restore: w.restore.clone(),
            });
            save(journal, &entries)?;
        }
        fs.write(&w.path, &w.value)?;
        written.push(w.path.clone());
    }
    Ok(written)
}

/// Restores everything the journal recorded, newest first, then removes the journal.
/// Returns how many files were restored.
pub fn undo(fs: &dyn HostFs, journal: &Path) -> std::io::Result<usize> {
    let entries = load(journal)?;
    for e in entries.iter().rev() {
        match &e.restore {
            Some(v) => fs.write(&e.path, v)?,
            None => match fs.remove(&e.path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            },
        }
    }
    if journal.exists() {
        std::fs::remove_file(journal)?;
    }
    Ok(entries.len())
}
