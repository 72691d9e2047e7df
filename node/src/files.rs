//! Small files a node keeps in its data dir (node id, saved assignments,
//! API address), written so that a crash or power cut leaves either the
//! old or the new contents, never an empty or half-written file.

use std::io::Write;
use std::path::Path;

/// Writes `contents` to `path` via a temp file: the temp file is fsynced
/// before the rename, and the directory after it, so the rename itself is
/// durable. A rename without the first fsync can leave an empty file
/// after a power cut (the rename reaches the disk before the data).
pub fn write_durably(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-id");
        write_durably(&path, b"one").unwrap();
        write_durably(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["node-id"]);
    }
}
