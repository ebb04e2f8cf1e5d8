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
//!   WAL record was written, becomes `to`. An idle server writes records that never force a
//!   segment switch (snapshots of running transactions, checkpoints); while it assigns no
//!   transaction id after a covered sample at which none was running, it commits nothing, so
//!   `to` follows its clock.

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
    /// Readings not yet vouched for by the archive, oldest first.
    samples: VecDeque<Reading>,
    /// The next transaction id of the newest covered reading, when no transaction was in
    /// progress then: while it stays the next one, nothing has been committed since.
    quiet_at: Option<u64>,
    /// The end of the newest segment the server has archived.
    archived_end: u64,
    to: Option<DateTime<Utc>>,
    backups: Option<Vec<BackupSet>>,
    backing_up: bool,
    next_backup_try: Option<Instant>,
    /// Why the last look failed (the server unreachable, the stanza not made).
    check_error: Option<String>,
    /// Why the server's archiving fails, while it does.
    archive_error: Option<String>,
    /// Why the last base backup failed, until one succeeds.
    backup_error: Option<String>,
    /// The server's WAL segment size.
    segment_size: u64,
    /// When the keeper last switched the server's WAL segment itself.
    forced_at: Option<Instant>,
}

impl Tracked {
    fn error(&self) -> Option<String> {
        self.check_error
            .clone()
            .or_else(|| self.archive_error.clone())
            .or_else(|| self.backup_error.clone())
    }
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
                servers.entry(a.server_id.clone()).or_default().check_error = Some(e.to_string());
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
        let switch = {
            let mut servers = self.servers.lock().await;
            let t = servers.entry(a.server_id.clone()).or_default();
            t.check_error = None;
            t.archive_error = sample.failing.as_ref().map(|wal| {
                format!(
                    "the server cannot archive {wal} (see its postgres.log); its WAL is kept \
                     until it can, and the window does not move"
                )
            });
            t.observe(sample);
            t.wants_switch(Utc::now(), self.archive.archive_timeout())
        };
        if switch {
            force_switch(&admin).await?;
            let mut servers = self.servers.lock().await;
            servers.entry(a.server_id.clone()).or_default().forced_at = Some(Instant::now());
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
                t.backup_error = None;
            }
            Err(e) => {
                tracing::warn!(server = stanza, error = %e, "base backup failed; trying again later");
                t.backup_error = Some(format!("the last base backup failed: {e}"));
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
                error: t.error(),
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
    /// The file whose archiving failed last, when no file was archived since.
    failing: Option<String>,
    /// The oldest transaction id still in progress (`next_xid` when none is), and the next one
    /// the server would assign.
    oldest_xid: u64,
    next_xid: u64,
}

async fn sample(admin: &tdb_engines::AdminEndpoint) -> Result<Sample, JobError> {
    let mut conn = connect(admin).await?;
    type Row = (
        DateTime<Utc>,
        String,
        Option<String>,
        i64,
        Option<String>,
        i64,
        i64,
    );
    let row: Row = sqlx::query_as(
        "SELECT clock_timestamp(), pg_current_wal_insert_lsn()::text, a.last_archived_wal,
                pg_size_bytes(current_setting('wal_segment_size')),
                CASE WHEN a.last_failed_time > coalesce(a.last_archived_time, '-infinity')
                     THEN a.last_failed_wal END,
                pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint
           FROM pg_stat_archiver a, pg_current_snapshot() s",
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
        failing: row.4,
        oldest_xid: u64::try_from(row.5).unwrap_or(0),
        next_xid: u64::try_from(row.6).unwrap_or(0),
    })
}

impl Tracked {
    /// Takes a sample in: the archive's end moves on, and the newest sample it covers sets `to`.
    /// A server that assigned no transaction id since a covered sample at which none was in
    /// progress has committed nothing since: what it wrote after (checkpoints, snapshots of
    /// running transactions, which never force a segment switch) changes no data, so `to`
    /// follows the clock.
    fn observe(&mut self, s: Sample) {
        if let Some(end) = s
            .archived
            .as_deref()
            .and_then(|name| archived_end(name, s.segment_size))
        {
            self.archived_end = self.archived_end.max(end);
        }
        let (at, next_xid) = (s.at, s.next_xid);
        self.segment_size = s.segment_size;
        self.samples.push_back(Reading {
            at: s.at,
            insert: s.insert,
            quiet: s.oldest_xid == s.next_xid,
            next_xid: s.next_xid,
        });
        let covered = self
            .samples
            .iter()
            .rposition(|r| r.insert <= self.archived_end + LONG_PAGE_HEADER);
        if let Some(i) = covered {
            let (sampled, quiet) = {
                let r = &self.samples[i];
                (r.at, r.quiet.then_some(r.next_xid))
            };
            self.advance(sampled);
            self.quiet_at = quiet;
            self.samples.drain(..=i);
        }
        if self.quiet_at == Some(next_xid) {
            self.advance(at);
            self.samples.clear();
        } else if self.quiet_at.is_some() && !self.samples.is_empty() {
            self.quiet_at = None;
        }
        // A server whose archiving is stuck keeps its samples bounded.
        while self.samples.len() > 2_000 {
            self.samples.pop_front();
        }
    }

    /// Whether the keeper should switch the server's WAL segment itself: a commit has waited
    /// longer than `archive_timeout` in the segment being written while everything before it is
    /// archived. PostgreSQL's own timer is meant to do it, but PostgreSQL 15 was seen here to
    /// leave a segment with commits in it unswitched for minutes after a restart (until its next
    /// checkpoint), and the window promised to trail by `archive_timeout` at most. Not while
    /// archiving fails (a switch would only add a segment to wait), and once per timeout.
    fn wants_switch(&self, now: DateTime<Utc>, timeout: Duration) -> bool {
        let (Some(oldest), Some(latest)) = (self.samples.front(), self.samples.back()) else {
            return false;
        };
        let waited = (now - oldest.at).to_std().unwrap_or(Duration::ZERO);
        self.archive_error.is_none()
            && self.segment_size > 0
            && latest.insert < self.archived_end + self.segment_size
            && waited > timeout + Duration::from_secs(1)
            && self.forced_at.is_none_or(|at| at.elapsed() >= timeout)
    }

    fn advance(&mut self, sampled: DateTime<Utc>) {
        let at = sampled - CLOCK_MARGIN;
        self.to = Some(self.to.map_or(at, |to| to.max(at)));
    }
}

/// One reading of a server not yet vouched for by its archive.
struct Reading {
    at: DateTime<Utc>,
    insert: u64,
    /// No transaction was in progress.
    quiet: bool,
    /// The next transaction id the server would assign.
    next_xid: u64,
}

/// The server's `postgres` database as its administrator.
async fn connect(
    admin: &tdb_engines::AdminEndpoint,
) -> Result<sqlx::postgres::PgConnection, JobError> {
    let options = sqlx::postgres::PgConnectOptions::new()
        .host(&admin.host)
        .port(admin.port)
        .username(&admin.user)
        .password(&admin.password)
        .database("postgres")
        .application_name("tdb-archive");
    sqlx::postgres::PgConnection::connect_with(&options)
        .await
        .map_err(|e| JobError::transient(format!("reaching the server: {e}")))
}

/// Ends the server's current WAL segment, so the archiver takes it.
async fn force_switch(admin: &tdb_engines::AdminEndpoint) -> Result<(), JobError> {
    let mut conn = connect(admin).await?;
    sqlx::query("SELECT pg_switch_wal()")
        .execute(&mut conn)
        .await
        .map_err(|e| JobError::transient(format!("switching the server's WAL segment: {e}")))?;
    let _ = conn.close().await;
    Ok(())
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
        busy(secs, insert, archived, (7, 9))
    }

    /// A sample whose oldest running and next transaction ids are `xids`.
    fn busy(secs: i64, insert: u64, archived: &str, xids: (u64, u64)) -> Sample {
        Sample {
            at: at(secs),
            insert,
            archived: Some(archived.into()),
            segment_size: SEG,
            failing: None,
            oldest_xid: xids.0,
            next_xid: xids.1,
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

    #[test]
    fn an_idle_server_s_window_follows_the_clock_until_it_commits() {
        let mut t = Tracked::default();
        // Covered, with no transaction in progress (oldest = next = 9).
        t.observe(busy(0, 0x400_0028, "000000010000000000000003", (9, 9)));
        assert_eq!(t.to, Some(at(0) - CLOCK_MARGIN));
        // A snapshot of running transactions is written (never archived on its own); no
        // transaction id assigned since: nothing was committed, the window follows the clock.
        t.observe(busy(5, 0x400_0100, "000000010000000000000003", (9, 9)));
        assert_eq!(t.to, Some(at(5) - CLOCK_MARGIN));
        // A write: a transaction id was assigned. The window waits for the archive.
        t.observe(busy(10, 0x400_2000, "000000010000000000000003", (10, 10)));
        assert_eq!(t.to, Some(at(5) - CLOCK_MARGIN));
        t.observe(busy(15, 0x400_2000, "000000010000000000000003", (10, 10)));
        assert_eq!(
            t.to,
            Some(at(5) - CLOCK_MARGIN),
            "not quiet until covered again"
        );
        t.observe(busy(20, 0x500_0028, "000000010000000000000004", (10, 10)));
        assert_eq!(t.to, Some(at(20) - CLOCK_MARGIN));
        t.observe(busy(25, 0x500_0100, "000000010000000000000004", (10, 10)));
        assert_eq!(t.to, Some(at(25) - CLOCK_MARGIN));
    }

    #[test]
    fn a_commit_left_in_the_open_segment_past_the_timeout_gets_it_switched() {
        let timeout = Duration::from_secs(2);
        let mut t = Tracked::default();
        t.observe(busy(0, 0x400_0028, "000000010000000000000003", (9, 9)));
        // A commit in segment 4, not archived.
        t.observe(busy(1, 0x400_0200, "000000010000000000000003", (10, 10)));
        assert!(!t.wants_switch(at(2), timeout), "not waited long enough");
        assert!(t.wants_switch(at(5), timeout));
        t.forced_at = Some(Instant::now());
        assert!(!t.wants_switch(at(6), timeout), "once per timeout");
        t.forced_at = None;
        // The archiver is behind (segment 4 full, 5 being written): switching would not help.
        t.observe(busy(7, 0x500_0200, "000000010000000000000003", (11, 11)));
        assert!(!t.wants_switch(at(9), timeout));
        // Archiving fails: no switch either.
        let mut failing = Tracked::default();
        failing.observe(busy(0, 0x400_0200, "000000010000000000000003", (10, 10)));
        failing.archive_error = Some("failing".into());
        assert!(!failing.wants_switch(at(9), timeout));
        // Covered: nothing to do.
        t.observe(busy(10, 0x600_0028, "000000010000000000000005", (11, 11)));
        assert!(!t.wants_switch(at(20), timeout));
    }

    #[test]
    fn a_transaction_in_progress_at_the_covered_sample_keeps_the_window_waiting() {
        let mut t = Tracked::default();
        // Transaction 8 is open (oldest 8, next 9) when the archive covers the sample: it may
        // commit later without a new id being assigned.
        t.observe(busy(0, 0x400_0028, "000000010000000000000003", (8, 9)));
        assert_eq!(t.to, Some(at(0) - CLOCK_MARGIN));
        t.observe(busy(5, 0x400_0200, "000000010000000000000003", (9, 9)));
        assert_eq!(t.to, Some(at(0) - CLOCK_MARGIN));
    }
}
