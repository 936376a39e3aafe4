//! `volume export`, `volume import`, `volume clone`: the data operations live in
//! `strata-volume`; what the engine adds is the one thing only it knows, which
//! containers are running with a volume mounted.
//!
//! The consistency rule: a volume is read (export, clone) only while no *running*
//! container has it mounted read-write, so the result is the volume as of one moment,
//! not a mix of before and after a writer's changes. The check runs before the read and
//! again after it; a writer that started in between (found by a changed start time)
//! discards a clone and fails an export. Read-only users are harmless, and stopped
//! containers write nothing. Refusing was chosen over freezing the writers (pausing
//! them would stall a user's service for the length of the copy, silently) and over a
//! filesystem snapshot (the local driver sits on whatever filesystem the data root is
//! on, which usually has none).
//!
//! An import is refused while any running container has the volume mounted at all: the
//! data is published by renaming a new directory onto `_data`, and a running container
//! keeps the old (empty) directory mounted, so it would never see what was imported.

use std::collections::HashMap;
use std::io::{Read, Write};

use strata_store::{Classify, ErrorKind};
use strata_volume::{TransferError, Volume};

use crate::containers::Container;
use crate::{Engine, EngineError};

/// Errors of the volume data commands.
#[derive(Debug, thiserror::Error)]
pub enum VolumeDataError {
    #[error("{op} {volume}: volume is in use read-write by running container(s) {}: stop them or mount the volume read-only", .containers.join(", "))]
    Writers { op: &'static str, volume: String, containers: Vec<String> },
    #[error("{op} {volume}: container(s) {} started with write access to the volume while it was read; the result was discarded", .containers.join(", "))]
    WriterStarted { op: &'static str, volume: String, containers: Vec<String> },
    #[error("import {volume}: volume is mounted by running container(s) {}, which would not see the imported data: stop them first", .containers.join(", "))]
    Mounted { volume: String, containers: Vec<String> },
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Classify for VolumeDataError {
    fn kind(&self) -> ErrorKind {
        match self {
            VolumeDataError::Writers { .. }
            | VolumeDataError::WriterStarted { .. }
            | VolumeDataError::Mounted { .. } => ErrorKind::Conflict,
            VolumeDataError::Transfer(e) => e.kind(),
            VolumeDataError::Engine(e) => e.kind(),
        }
    }
}

type Result<T, E = VolumeDataError> = std::result::Result<T, E>;

/// Who could write a volume when a read began: container id → start time. A changed
/// start time later means the container (re)started during the read.
struct Writers(HashMap<String, String>);

impl Writers {
    /// Names of the writers in `now` (id, name, running, start time) that are running or
    /// have started since: a changed start time, or, for one created since, any start.
    fn started_since(&self, now: &[(String, String, bool, String)]) -> Vec<String> {
        now.iter()
            .filter(|(id, _, running, started)| {
                *running
                    || match self.0.get(id) {
                        Some(before) => before != started,
                        None => started != crate::containers::ZERO_TIME,
                    }
            })
            .map(|(_, name, _, _)| name.clone())
            .collect()
    }
}

impl Engine {
    /// Containers that have `volume` mounted, `writable` ones only if asked (reconciled,
    /// so a container whose processes died is not counted as running).
    pub fn volume_users(&self, volume: &str, writable: bool) -> crate::Result<Vec<Container>> {
        Ok(self
            .containers()?
            .into_iter()
            .filter(|c| c.volume_mounts.iter().any(|m| m.name == volume && !(writable && m.read_only)))
            .collect())
    }

    /// Refuses while a running container can write `volume`; otherwise notes every
    /// container that could, for `recheck_writers`.
    fn check_writers(&self, op: &'static str, volume: &str) -> Result<Writers> {
        let users = self.volume_users(volume, true)?;
        let running: Vec<String> = users.iter().filter(|c| c.running()).map(|c| c.name.clone()).collect();
        if !running.is_empty() {
            return Err(VolumeDataError::Writers { op, volume: volume.to_string(), containers: running });
        }
        Ok(Writers(users.into_iter().map(|c| (c.id, c.started_at)).collect()))
    }

    /// After a read: did a container with write access run at any point since `before`?
    fn recheck_writers(&self, op: &'static str, volume: &str, before: &Writers) -> Result<()> {
        let now: Vec<(String, String, bool, String)> = self
            .volume_users(volume, true)?
            .into_iter()
            .map(|c| {
                let running = c.running();
                (c.id, c.name, running, c.started_at)
            })
            .collect();
        let started = before.started_since(&now);
        if started.is_empty() {
            Ok(())
        } else {
            Err(VolumeDataError::WriterStarted { op, volume: volume.to_string(), containers: started })
        }
    }

    /// `volume export`: the volume's content as a tar on `out`. An error after data was
    /// written means the stream must be thrown away.
    pub fn export_volume(&self, name: &str, out: impl Write) -> Result<()> {
        self.volumes.get(name).map_err(TransferError::from)?;
        let before = self.check_writers("export", name)?;
        self.volumes.export(name, out)?;
        self.recheck_writers("export", name, &before)
    }

    /// `volume import`: fills the empty volume `name` (created if missing) from a tar.
    pub fn import_volume(&self, name: &str, input: impl Read) -> Result<Volume> {
        let running: Vec<String> =
            self.volume_users(name, false)?.into_iter().filter(|c| c.running()).map(|c| c.name).collect();
        if !running.is_empty() {
            return Err(VolumeDataError::Mounted { volume: name.to_string(), containers: running });
        }
        Ok(self.volumes.import(name, input)?)
    }

    /// `volume clone`: a consistent copy of `src` in the new volume `dst`.
    pub fn clone_volume(&self, src: &str, dst: &str) -> Result<Volume> {
        self.volumes.get(src).map_err(TransferError::from)?;
        let before = self.check_writers("clone", src)?;
        self.volumes.clone_volume(src, dst, || self.recheck_writers("clone", src, &before))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, running: bool, started: &str) -> (String, String, bool, String) {
        (id.to_string(), format!("name-{id}"), running, started.to_string())
    }

    #[test]
    fn a_writer_that_ran_during_the_read_is_noticed() {
        let before = Writers(HashMap::from([("a".to_string(), "T1".to_string()), ("b".to_string(), ZERO.to_string())]));
        // Unchanged and stopped: the read was consistent.
        assert!(before.started_since(&[c("a", false, "T1"), c("b", false, ZERO)]).is_empty());
        // Running now; started and stopped again; created and started since.
        let now = [c("a", true, "T2"), c("b", false, "T3"), c("new", false, "T4")];
        assert_eq!(before.started_since(&now), ["name-a", "name-b", "name-new"]);
        // Created since but never started: it wrote nothing.
        let never = Writers(HashMap::new());
        assert!(never.started_since(&[c("idle", false, ZERO)]).is_empty());
    }

    const ZERO: &str = crate::containers::ZERO_TIME;
}
