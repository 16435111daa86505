//! Rollout files under `{data_dir}/alerts/rollouts/`: written to a temporary
//! file, synced and renamed over the old one, so a crash leaves either the
//! old or the new rollout, never half of one. The pending deliveries inside
//! them are the durable outbox.

use crate::rollout::Rollout;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The directory of rollout files.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("alerts").join("rollouts")
}

pub(crate) fn file(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Writes `r` atomically.
pub fn save(dir: &Path, r: &Rollout) -> std::io::Result<()> {
    let path = file(dir, &r.id);
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?;
    // Secrets (webhook keys, tokens) live in these files: owner only.
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?
    };
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod mode_tests {
    #[test]
    fn rollout_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let spec: crate::RolloutSpec = serde_json::from_value(serde_json::json!({
            "service": "s", "baseline": "a", "canary": "b",
            "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/h", "secret": "k"}]
        }))
        .unwrap();
        let r = crate::Rollout::new(
            "r1".into(),
            crate::rollout::Origin::Api,
            spec,
            chrono::Utc::now(),
        );
        super::save(dir.path(), &r).unwrap();
        let mode = std::fs::metadata(super::file(dir.path(), &r.id))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

pub fn remove(dir: &Path, id: &str) -> std::io::Result<()> {
    match std::fs::remove_file(file(dir, id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Every rollout in `dir`. A file that cannot be read is renamed to
/// `*.corrupt` and reported, never fatal.
pub fn load_all(dir: &Path) -> std::io::Result<(Vec<Rollout>, Vec<String>)> {
    std::fs::create_dir_all(dir)?;
    let (mut out, mut problems) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Rollout>(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => out.push(r),
            Err(e) => {
                let _ = std::fs::rename(&path, path.with_extension("json.corrupt"));
                problems.push(format!("{}: {e} (moved aside as .corrupt)", path.display()));
            }
        }
    }
    out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok((out, problems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::Origin;

    #[test]
    fn saved_rollouts_load_back_and_corrupt_files_are_set_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir(tmp.path());
        std::fs::create_dir_all(&d).unwrap();
        let spec = serde_json::from_str(r#"{"service":"s","baseline":"1","canary":"2"}"#).unwrap();
        let r = Rollout::new("a".into(), Origin::Api, spec, chrono::Utc::now());
        save(&d, &r).unwrap();
        std::fs::write(d.join("b.json"), "{not json").unwrap();
        let (all, problems) = load_all(&d).unwrap();
        assert_eq!(all, vec![r]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(d.join("b.json.corrupt").exists());
        remove(&d, "a").unwrap();
        remove(&d, "a").unwrap();
        assert!(load_all(&d).unwrap().0.is_empty());
    }
}
