//! The data dir is private to the process's user: directories `0700`, files `0600`.
//!
//! The replicated state holds secrets in clear (connector parameters, the keys the coordinator
//! presents to workers: docs/security.md, "Secrets at rest"), so nobody else on the machine may
//! read the sled files. [`make_private`] runs after sled opened its files; files sled creates
//! later inherit the umask, but sit in a `0700` directory. Only directories this process owns
//! the contents of are made private (`<data-dir>/raft`, and the data dir itself when the
//! coordinator created it): a `--data-dir` given by the operator may be shared with other
//! things and is not changed recursively.

use std::io;
use std::path::Path;

/// Sets `dir` and every directory below it to `0700` and every file to `0600` (no-op off Unix).
pub fn make_private(dir: &Path) -> io::Result<()> {
    restrict(dir, true)
}

/// Sets `dir` alone to `0700` (no-op off Unix).
pub fn make_dir_private(dir: &Path) -> io::Result<()> {
    restrict(dir, false)
}

fn restrict(dir: &Path, recursive: bool) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        if !recursive {
            return Ok(());
        }
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                restrict(&entry.path(), true)?;
            } else if kind.is_file() {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, recursive);
    Ok(())
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn dirs_and_files_become_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let sub = root.path().join("raft");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("db"), b"x").unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        make_private(root.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(root.path()), 0o700);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&sub.join("db")), 0o600);
    }
}
