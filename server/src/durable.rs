//! Durable files: written whole or not at all, and what a crash leaves
//! behind removed on the next start.
//!
//! Every file the server keeps (modules, tenant state, tokens, notice keys)
//! is written to a temporary name, synced, renamed into place and its
//! directory synced, so a reader sees the old file or the new one, never
//! a torn one. Crash tests inject an abort between write and rename with
//! `GAVEL_FAIL_POINT`.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::Path;

/// Prefix of every temporary file and folder: hidden, never a valid
/// tenant id or version file name, removed on open.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A temporary name beside `name`, unique within this process.
pub fn temp_name(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{TEMP_PREFIX}{name}-{}-{n}", std::process::id())
}

/// Writes `bytes` to `path` atomically and durably. `mode` is the new
/// file's permission bits (e.g. 0o600 for secrets), set before any byte
/// is written.
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?;
    let tmp = dir.join(temp_name(&name.to_string_lossy()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fail_point("after-temp-write")?;
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically and durably (mode 0644).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, 0o644)
}

/// Removes what a crash left half-written in `dir`: files and folders
/// whose names start with [`TEMP_PREFIX`]. Returns how many.
pub fn remove_temporaries(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
        removed += 1;
    }
    Ok(removed)
}

/// Fault injection for crash tests: when `GAVEL_FAIL_POINT` names this
/// point, the process aborts right here, as a crash would.
pub fn fail_point(name: &str) -> io::Result<()> {
    if std::env::var_os("GAVEL_FAIL_POINT").is_some_and(|point| point == name) {
        std::process::abort();
    }
    Ok(())
}
