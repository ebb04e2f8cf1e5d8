//! The keeper of the WAL archives of the managed servers this tdb runs, on a timer: it creates
//! each server's stanza, takes base backups when they are due (full, then differential; pgBackRest
//! expires what retention lets go), and records in the catalog what each archive can recover now.
//!
//! The window is read from the archive's real state, never from settings:
//! - `from` is the end of the oldest base backup still in the repository (a recovery starts from
//!   a backup and must replay past its end), plus two seconds: pgBackRest records whole seconds,
//!   and commit times come from a clock that may run a moment apart.
//! - `to` is the newest moment whose every commit is in the archive. Every tick samples the
//!   server's clock and WAL insert position; once the server says (`pg_stat_archiver`) that the
//!   segment holding that position has been archived, everything committed before the sample is
//!   archived too, and the sample's time, less a second for a commit stamped just before its
//!   WAL record was written, becomes `to`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::Connection;
use tdb_catalog::recoveries::{ArchiveState, ServerArchive};
use tdb_engines::managed::archive::{BackupKind, BackupSet, WalArchive};
use tokio_util::sync::CancellationToken;

use crate::access::admin_endpoint;
use crate::{JobError, Runner};

/// Size of a WAL page's long header: where the insert position of a server that has written
/// nothing since its last segment switch stands in the new segment.
const LONG_PAGE_HEADER: u64 = 40;
/// Margin between a sample's clock reading and the commits it vouches for.
const CLOCK_MARGIN: chrono::Duration = chrono::Duration::seconds(1);
/// A failed backup is tried again after this long.
const BACKUP_RETRY: Duration = Duration::from_secs(60);

pub async fn run(runner: Runner, shutdown: CancellationToken) {
    let Some(archive) = runner.archive.clone() else {
        return;
    };
    let keeper = Arc::new(Keeper {
        archive,
        servers: Default::default(),
    });
    loop {
        if let Err(e) = keeper.tick(&runner).await {
            tracing::warn!(error = %e, "WAL archive pass failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(runner.config.pitr_tick) => {}
        }
    }
}

struct Keeper {
    archive: Arc<WalArchive>,
    servers: tokio::sync::Mutex<HashMap<String, Tracked>>,
}

/// What the keeper knows of one server's archive between ticks.
#[derive(Default)]
struct Tracked {
    ready: bool,
    /// (clock, WAL insert position) samples not yet vouched for by the archive, oldest first.
    samples: VecDeque<(DateTime<Utc>, u64)>,
    /// The end of the newest segment the server has archived.
    archived_end: u64,
    to: Option<DateTime<Utc>>,
    backups: Option<Vec<BackupSet>>,
    backing_up: bool,
    next_backup_try: Option<Instant>,
    error: Option<String>,
}

impl Keeper {
    async fn tick(self: &Arc<Self>, runner: &Runner) -> Result<(), JobError> {
        let archives = runner
            .catalog
            .archives_of(runner.provisioner.kind())
            .await?;
        for a in archives {
            if let Err(e) = self.keep(runner, &a).await {
                tracing::warn!(server = %a.stanza, error = %e, "WAL archive check failed");
                let mut servers = self.servers.lock().await;
                servers.entry(a.server_id.clone()).or_default().error = Some(e.to_string());
            }
            self.record(runner, &a).await?;
        }
        Ok(())
    }

    /// One look at one server: its stanza made, a sample taken, a backup started when due.
    async fn keep(self: &Arc<Self>, runner: &Runner, a: &ServerArchive) -> Result<(), JobError> {
        let server = runner.catalog.find_server(&a.server_id).await?;
        let admin = admin_endpoint(&runner.master_key, &server)?;
        let ready = self
            .servers
            .lock()
            .await
            .entry(a.server_id.clone())
            .or_default()
            .ready;
        if !ready {
            self.archive
                .create_stanza(&a.stanza, &admin.password)
                .await
                .map_err(|e| JobError::from(e).context("creating the archive's stanza"))?;
            let backups = self.archive.backups(&a.stanza).await?;
            let mut servers = self.servers.lock().await;
            let t = servers.entry(a.server_id.clone()).or_default();
            t.ready = true;
            t.backups = Some(backups);
        }
        let sample = sample(&admin).await?;
        {
            let mut servers = self.servers.lock().await;
            let t = servers.entry(a.server_id.clone()).or_default();
            t.observe(sample);
            t.error = None;
        }
        if let Some(kind) = self.due(runner, a).await {
            let keeper = self.clone();
            let (server_id, stanza, password) = (
                a.server_id.clone(),
                a.stanza.clone(),
                admin.password.clone(),
            );
            tokio::spawn(async move {
                keeper.backup(&server_id, &stanza, kind, &password).await;
            });
        }
        Ok(())
    }

    /// The backup due now, if any (and none is running): a full one when there is none recent
    /// enough or an operator asked for one since the last, else a differential one.
    async fn due(&self, runner: &Runner, a: &ServerArchive) -> Option<BackupKind> {
        let mut servers = self.servers.lock().await;
        let t = servers.get_mut(&a.server_id)?;
        if t.backing_up || t.next_backup_try.is_some_and(|at| Instant::now() < at) {
            return None;
        }
        let backups = t.backups.as_ref()?;
        let now = Utc::now();
        let age = |b: Option<&BackupSet>| {
            b.map_or(Duration::MAX, |b| {
                (now - b.stopped).to_std().unwrap_or(Duration::ZERO)
            })
        };
        let asked = a.backup_requested_at.is_some_and(|asked| {
            backups
                .last()
                .is_none_or(|b| b.started < asked - chrono::Duration::seconds(1))
        });
        let kind = if asked
            || age(backups.iter().rev().find(|b| b.kind == "full")) >= runner.config.pitr_full_every
        {
            BackupKind::Full
        } else if age(backups.last()) >= runner.config.pitr_diff_every {
            BackupKind::Diff
        } else {
            return None;
        };
        t.backing_up = true;
        Some(kind)
    }

    async fn backup(&self, server_id: &str, stanza: &str, kind: BackupKind, password: &str) {
        let started = Instant::now();
        let outcome = match self.archive.backup(stanza, kind, password).await {
            Ok(()) => self.archive.backups(stanza).await,
            Err(e) => Err(e),
        };
        let mut servers = self.servers.lock().await;
        let t = servers.entry(server_id.to_string()).or_default();
        t.backing_up = false;
        match outcome {
            Ok(backups) => {
                tracing::info!(
                    server = stanza,
                    kind = kind.as_str(),
                    seconds = started.elapsed().as_secs_f64(),
                    "base backup taken"
                );
                t.backups = Some(backups);
                t.next_backup_try = None;
            }
            Err(e) => {
                tracing::warn!(server = stanza, error = %e, "base backup failed; trying again later");
                t.error = Some(e.to_string());
                t.next_backup_try = Some(Instant::now() + BACKUP_RETRY);
            }
        }
    }

    async fn record(&self, runner: &Runner, a: &ServerArchive) -> Result<(), JobError> {
        let state = {
            let servers = self.servers.lock().await;
            let Some(t) = servers.get(&a.server_id) else {
                return Ok(());
            };
            let backups = t.backups.as_deref().unwrap_or_default();
            ArchiveState {
                ready: t.ready,
                recoverable_from: backups
                    .first()
                    .map(|b| b.stopped + chrono::Duration::seconds(2)),
                recoverable_to: t.to,
                last_full_at: backups
                    .iter()
                    .rev()
                    .find(|b| b.kind == "full")
                    .map(|b| b.stopped),
                last_backup_at: backups.last().map(|b| b.stopped),
                error: t.error.clone(),
            }
        };
        runner
            .catalog
            .set_archive_state(&a.server_id, &state)
            .await?;
        Ok(())
    }
}

/// One reading of a server's clock and WAL: (clock, insert position, newest archived file,
/// segment size).
struct Sample {
    at: DateTime<Utc>,
    insert: u64,
    archived: Option<String>,
    segment_size: u64,
}

async fn sample(admin: &tdb_engines::AdminEndpoint) -> Result<Sample, JobError> {
    let options = sqlx::postgres::PgConnectOptions::new()
        .host(&admin.host)
        .port(admin.port)
        .username(&admin.user)
        .password(&admin.password)
        .database("postgres")
        .application_name("tdb-archive");
    let mut conn = sqlx::postgres::PgConnection::connect_with(&options)
        .await
        .map_err(|e| JobError::transient(format!("reaching the server: {e}")))?;
    let row: (DateTime<Utc>, String, Option<String>, i64) = sqlx::query_as(
        "SELECT clock_timestamp(), pg_current_wal_insert_lsn()::text, a.last_archived_wal,
                pg_size_bytes(current_setting('wal_segment_size'))
           FROM pg_stat_archiver a",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| JobError::transient(format!("sampling the server's WAL: {e}")))?;
    let _ = conn.close().await;
    Ok(Sample {
        at: row.0,
        insert: parse_lsn(&row.1)
            .ok_or_else(|| JobError::permanent(format!("unreadable WAL position '{}'", row.1)))?,
        archived: row.2,
        segment_size: u64::try_from(row.3).unwrap_or(16 << 20).max(1),
    })
}

impl Tracked {
    /// Takes a sample in: the archive's end moves on, and the newest sample it covers sets `to`.
    fn observe(&mut self, s: Sample) {
        if let Some(end) = s
            .archived
            .as_deref()
            .and_then(|name| archived_end(name, s.segment_size))
        {
            self.archived_end = self.archived_end.max(end);
        }
        self.samples.push_back((s.at, s.insert));
        let covered = self
            .samples
            .iter()
            .rposition(|(_, lsn)| *lsn <= self.archived_end + LONG_PAGE_HEADER);
        if let Some(i) = covered {
            let at = self.samples[i].0 - CLOCK_MARGIN;
            self.to = Some(self.to.map_or(at, |to| to.max(at)));
            self.samples.drain(..=i);
        }
        // A server whose archiving is stuck keeps its samples bounded.
        while self.samples.len() > 2_000 {
            self.samples.pop_front();
        }
    }
}

/// `X/Y` to a WAL position.
fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The WAL position up to which an archived file proves the archive complete: the end of a
/// segment (`TTTTTTTTXXXXXXXXYYYYYYYY`), or for a backup history file
/// (`<segment>.<offset>.backup`) the start of the segment it names (the segments before it were
/// archived first). Timeline history and partial files prove nothing.
fn archived_end(name: &str, segment_size: u64) -> Option<u64> {
    let (segment, whole) = match name.split_once('.') {
        None => (name, true),
        Some((segment, rest)) if rest.ends_with(".backup") => (segment, false),
        Some(_) => return None,
    };
    if segment.len() != 24 || !segment.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let log = u64::from_str_radix(&segment[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&segment[16..24], 16).ok()?;
    let per_log = 0x1_0000_0000 / segment_size;
    let number = log * per_log + seg;
    Some(if whole { number + 1 } else { number } * segment_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    #[test]
    fn wal_positions_and_archived_files() {
        assert_eq!(parse_lsn("0/3000028"), Some(0x300_0028));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("x"), None);
        assert_eq!(
            archived_end("000000010000000000000002", SEG),
            Some(0x300_0000)
        );
        assert_eq!(
            archived_end("0000000200000001000000FF", SEG),
            Some(0x2_0000_0000)
        );
        assert_eq!(
            archived_end("000000010000000000000002.00000028.backup", SEG),
            Some(0x200_0000)
        );
        assert_eq!(archived_end("00000002.history", SEG), None);
        assert_eq!(archived_end("000000010000000000000002.partial", SEG), None);
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time")
    }

    fn sample(secs: i64, insert: u64, archived: &str) -> Sample {
        Sample {
            at: at(secs),
            insert,
            archived: Some(archived.into()),
            segment_size: SEG,
        }
    }

    #[test]
    fn to_moves_only_once_the_archive_covers_a_sample() {
        let mut t = Tracked::default();
        // Segment 2 archived; the server writes in segment 3.
        t.observe(sample(0, 0x300_1000, "000000010000000000000002"));
        assert_eq!(t.to, None, "commits in segment 3 are not archived yet");
        t.observe(sample(5, 0x300_2000, "000000010000000000000002"));
        assert_eq!(t.to, None);
        // Segment 3 switched and archived; the server has written nothing since.
        t.observe(sample(10, 0x400_0028, "000000010000000000000003"));
        assert_eq!(t.to, Some(at(10) - CLOCK_MARGIN));
        assert!(t.samples.is_empty());
        // New writes in segment 4: `to` holds until that segment is archived.
        t.observe(sample(15, 0x400_5000, "000000010000000000000003"));
        assert_eq!(t.to, Some(at(10) - CLOCK_MARGIN));
        // A backup history file names a segment whose predecessors are archived: no step back.
        t.observe(sample(
            20,
            0x400_6000,
            "000000010000000000000003.00000028.backup",
        ));
        assert_eq!(t.to, Some(at(10) - CLOCK_MARGIN));
        t.observe(sample(25, 0x500_0028, "000000010000000000000004"));
        assert_eq!(t.to, Some(at(25) - CLOCK_MARGIN));
    }
}
