//! The metadata database: one SQLite file in WAL mode, shared by every strata process
//! on a data root.
//!
//! Lifecycle: `Db::open` sets the pragmas; each component then calls `migrate` with its
//! own ordered list of schema steps (it owns its tables). Reads run on the connection
//! directly; every write runs in `write`, a `BEGIN IMMEDIATE` transaction, so two writers
//! serialise at the start instead of failing at commit. Never hold a transaction across
//! slow work (I/O on blobs, unpacking): do the work first, then record it.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::{Result, StoreError};

pub struct Db {
    conn: Mutex<Connection>,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // Switching to WAL needs an exclusive lock and does not wait on the busy handler:
        // several processes opening a new data root at once retry here. WAL is then
        // persistent, so later opens find it set and skip the switch.
        let mut tries = 0;
        loop {
            let mode: rusqlite::Result<String> = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0));
            let res = match mode {
                Ok(m) if m.eq_ignore_ascii_case("wal") => break,
                Ok(_) => conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)).map(|_| ()),
                Err(e) => Err(e),
            };
            match res {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) && tries < 500 =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        }
        // NORMAL in WAL mode: every transaction is atomic and the database consistent
        // after any crash; only the last commits before a power cut may roll back.
        // Content is fsynced before a row refers to it, so a lost commit orphans data
        // (swept, reported by `system check`) and never leaves a dangling reference.
        // Transitions a user must not lose use `write_durable`.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Read pages through a shared mapping instead of a pread per page.
        conn.pragma_update(None, "mmap_size", 256i64 << 20)?;
        // Every strata command is a short process: checkpointing the WAL at each close
        // would cost two fsyncs per command. SQLite checkpoints on its own as the WAL grows.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_versions(component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
        )?;
        Ok(Db { conn: Mutex::new(conn) })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction is
        // rolled back on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings `component`'s tables up to `steps.len()`; step i moves version i to i+1.
    /// Safe to call from several processes at once: the version is read and advanced
    /// inside one immediate transaction.
    pub fn migrate(&self, db_path: &Path, component: &str, steps: &[&str]) -> Result<()> {
        let known = steps.len() as i64;
        let current: i64 = self.read(|c| {
            c.query_row("SELECT version FROM schema_versions WHERE component=?1", [component], |r| r.get(0))
                .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(0) } else { Err(e) })
        })?;
        if current == known {
            return Ok(());
        }
        self.write(|tx| {
            let current: i64 = tx
                .query_row("SELECT version FROM schema_versions WHERE component=?1", [component], |r| r.get(0))
                .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(0) } else { Err(e) })?;
            if current > known {
                return Err(StoreError::SchemaTooNew {
                    path: db_path.to_path_buf(),
                    component: component.to_string(),
                    found: current,
                    known,
                });
            }
            for step in &steps[current as usize..] {
                tx.execute_batch(step)?;
            }
            tx.execute(
                "INSERT INTO schema_versions(component, version) VALUES(?1, ?2)
                 ON CONFLICT(component) DO UPDATE SET version=excluded.version",
                rusqlite::params![component, known],
            )?;
            Ok(())
        })
    }

    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.lock();
        Ok(f(&conn)?)
    }

    /// `write`, flushed to disk before it returns (with it, everything committed before).
    pub fn write_durable<T, E>(&self, f: impl FnOnce(&Transaction<'_>) -> std::result::Result<T, E>) -> std::result::Result<T, E>
    where
        E: From<rusqlite::Error>,
    {
        {
            let conn = self.lock();
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        let out = self.write(f);
        let conn = self.lock();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        out
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction and commits if it returns `Ok`.
    pub fn write<T, E>(&self, f: impl FnOnce(&Transaction<'_>) -> std::result::Result<T, E>) -> std::result::Result<T, E>
    where
        E: From<rusqlite::Error>,
    {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// docker's lookup of an object a user names (container, network): the full id, else the
/// exact name, else an id prefix that matches exactly one row. `select` is a query over a
/// table with `id` and `name` columns, to which a WHERE clause is appended.
pub fn find_by_id_or_name<T>(
    c: &Connection,
    select: &str,
    name: &str,
    from_row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    use rusqlite::OptionalExtension;
    if name.is_empty() {
        return Ok(None);
    }
    for col in ["id", "name"] {
        if let Some(x) = c.query_row(&format!("{select} WHERE {col}=?1"), [name], &from_row).optional()? {
            return Ok(Some(x));
        }
    }
    if !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let mut st = c.prepare(&format!("{select} WHERE id >= ?1 AND id < ?2 LIMIT 2"))?;
    let rows: Vec<T> = st.query_map([name.to_string(), format!("{name}g")], &from_row)?.collect::<rusqlite::Result<_>>()?;
    Ok(if rows.len() == 1 { rows.into_iter().next() } else { None })
}
