//! Every write the local server makes (a page's save, an upload, a restored page) goes through
//! here, so it is the same save as the mount's: with a mount, the engine's (the replaced copy kept
//! in `sites-versions/`, an atomic replace, the kernel told, the push started at once), a new file
//! and its folders made as the mount makes them; standalone, the same disk save without the push
//! (the next mount sends it up).

use std::sync::Arc;

use super::{SaveTo, ServeState};
use crate::cache::{save, MirrorError, RelPath, ROOT_INO};
use crate::protocol::NodeKind;
use crate::sync::{Engine, Refusal, SyncError};

/// Why a write of the local server did not happen (its Display is what the page is told).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    /// The write's blocking task panicked or was lost: a bug, logged where it is answered.
    #[error("a bug stopped the save: {0}")]
    Lost(#[from] tokio::task::JoinError),
}

impl ServeState {
    /// Writes `bytes` as the content of `rel`, creating it (and its folders) if it is new.
    pub async fn write_file(&self, rel: &RelPath, bytes: bytes::Bytes) -> Result<(), WriteError> {
        match self.0.save_to.clone() {
            SaveTo::Engine(engine) => {
                // The copy being replaced must be on disk to be kept in sites-versions; when it
                // cannot be fetched (offline), the platform still keeps it as a version.
                if let Some(ino) = engine.ino_of_path(rel) {
                    let _ = engine.fetch(ino).await;
                }
                let rel = rel.clone();
                tokio::task::spawn_blocking(move || engine_write(&engine, &rel, bytes)).await?
            }
            SaveTo::Mirror => {
                let lock = {
                    let mut locks = self.0.locks.lock().unwrap_or_else(|p| p.into_inner());
                    locks.entry(rel.to_string()).or_default().clone()
                };
                let one_at_a_time = lock.lock().await;
                let mirror = self.0.mirror.clone();
                let key = rel.to_string();
                let rel = rel.clone();
                let saved = tokio::task::spawn_blocking(move || {
                    let work = save::stage(&mirror, &rel, &bytes)?;
                    save::replace(
                        &mirror,
                        &rel,
                        NodeKind::of_file_name(&rel),
                        save::Work {
                            path: &work,
                            bytes: Some(bytes),
                        },
                        false,
                        None,
                        save::Durability::Synced,
                    )
                })
                .await;
                drop(one_at_a_time);
                // Dropped with its last user, so the map holds only files being saved now.
                let mut locks = self.0.locks.lock().unwrap_or_else(|p| p.into_inner());
                if locks.get(&key).is_some_and(|l| Arc::ptr_eq(l, &lock))
                    && Arc::strong_count(&lock) == 2
                {
                    locks.remove(&key);
                }
                drop(locks);
                saved??;
                Ok(())
            }
        }
    }
}

/// The engine's save of `rel`, creating the file and its folders first when they are new.
fn engine_write(
    engine: &Arc<Engine>,
    rel: &RelPath,
    bytes: bytes::Bytes,
) -> Result<(), WriteError> {
    let ino = match engine.ino_of_path(rel) {
        Some(ino) => ino,
        None => create(engine, rel)?,
    };
    Ok(engine.save_bytes(ino, bytes)?)
}

/// Makes `rel` as an empty file, as `mkdir -p` and a create through the mount would.
fn create(engine: &Arc<Engine>, rel: &RelPath) -> Result<u64, SyncError> {
    let parts: Vec<&str> = rel.split('/').collect();
    let Some((name, folders)) = parts.split_last() else {
        return Err(SyncError::Refused(Refusal::IsAFolder));
    };
    let mut parent = ROOT_INO;
    for folder in folders {
        parent = match engine.index.lookup(parent, folder) {
            Some(e) => e.ino,
            None => match engine.make_dir(parent, folder, None) {
                Ok(e) => {
                    engine.notify_entry(parent, folder);
                    e.ino
                }
                // Made by another request meanwhile.
                Err(SyncError::Refused(Refusal::Exists)) => {
                    engine
                        .index
                        .lookup(parent, folder)
                        .ok_or(SyncError::Refused(Refusal::NoSuchFolder))?
                        .ino
                }
                Err(e) => return Err(e),
            },
        };
    }
    match engine.create_file(parent, name, None) {
        Ok(e) => {
            engine.notify_entry(parent, name);
            Ok(e.ino)
        }
        Err(SyncError::Refused(Refusal::Exists)) => engine
            .index
            .lookup(parent, name)
            .map(|e| e.ino)
            .ok_or(SyncError::Refused(Refusal::NoSuchFile)),
        Err(e) => Err(e),
    }
}
