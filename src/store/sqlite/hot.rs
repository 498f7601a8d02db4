//! The hot path's writer: one thread that owns one SQLite connection and writes every
//! submission, claim and delivery outcome.
//!
//! Callers on the async side send an [`Op`] and wait for its answer. The thread takes the first
//! waiting op and everything queued behind it, runs them all in **one** `BEGIN IMMEDIATE`
//! transaction (should one fail, the lot runs again op by op in savepoints, so one bad op does
//! not sink the others), commits — one fsync for the lot with `synchronous=FULL` — and only then
//! answers. This is group commit
//! across all three kinds of write: a submission, the claim that picks it up and the outcomes of
//! earlier deliveries share one commit instead of paying one each, and no statement crosses a
//! thread boundary on its own (sqlx runs each statement as a round trip to its connection's
//! thread, which measured as the critical path: see BENCHMARKS.md).
//!
//! Nothing is answered before the transaction holding it committed: an accepted message is on
//! disk, a claim is recorded before its messages are handed out, an outcome is durable before
//! the in-flight slot it held is freed. A second thread checkpoints the WAL in the background,
//! and the writer finishes each checkpoint between two commits so that the WAL starts over.

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::{NUMBER_OF_MESSAGE, insert_next_row, recipients_from_json, recipients_of_messages, ts};
use crate::domain::message::MessageStatus;
use crate::store::{
    ClaimedContent, ClaimedMessage, DeliveryUpdate, Enqueued, NewMessage, OnCommit, StoreError,
};

/// Most ops run in one transaction; more wait for the next one.
const MAX_OPS_PER_COMMIT: usize = 1024;

/// A commit of at least this many ops means the writer is busy: the next one waits a little
/// for company (see [`collect`]).
const BUSY_OPS: usize = 8;

/// The longest a busy writer holds the first op of a transaction while more arrive.
const LINGER: Duration = Duration::from_millis(1);

enum Op {
    Enqueue(
        Vec<NewMessage>,
        Option<OnCommit>,
        oneshot::Sender<Result<Vec<Enqueued>, StoreError>>,
    ),
    Claim {
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
        reply: oneshot::Sender<Result<Vec<ClaimedMessage>, StoreError>>,
    },
    Record(
        Arc<[DeliveryUpdate]>,
        oneshot::Sender<Result<(), StoreError>>,
    ),
}

/// What the writer thread receives.
enum Msg {
    Op(Op),
    /// From the checkpointer thread, after each of its checkpoints: finish it between two
    /// commits (see [`catch_up_checkpoint`]).
    CatchUp,
}

/// What one op wrote, before the commit.
enum Out {
    Enqueue(Vec<Enqueued>),
    Claim(Vec<ClaimedMessage>),
    Record,
}

impl Op {
    fn execute(&self, conn: &Connection, at: &str) -> Result<Out, StoreError> {
        match self {
            Op::Enqueue(batch, _, _) => enqueue(conn, batch, at).map(Out::Enqueue),
            Op::Claim {
                now_ms,
                lease_until_ms,
                limit,
                ..
            } => claim(conn, *now_ms, *lease_until_ms, *limit).map(Out::Claim),
            Op::Record(updates, _) => record(conn, updates, at).map(|()| Out::Record),
        }
    }

    /// Answers the caller with what the op wrote, once the commit is known; when the commit
    /// failed, every op gets that error instead.
    fn answer(self, out: Result<Out, StoreError>, commit: &Result<(), String>) {
        let out = match commit {
            Ok(()) => out,
            Err(e) => Err(StoreError::Write(e.clone())),
        };
        let mismatch = || StoreError::Write("the writer mixed up two answers".into());
        match self {
            Op::Enqueue(_, on_commit, reply) => {
                let out = out.and_then(|o| match o {
                    Out::Enqueue(v) => Ok(v),
                    _ => Err(mismatch()),
                });
                if let Some(on_commit) = on_commit {
                    on_commit(&out);
                }
                let _ = reply.send(out);
            }
            Op::Claim { reply, .. } => {
                let _ = reply.send(out.and_then(|o| match o {
                    Out::Claim(v) => Ok(v),
                    _ => Err(mismatch()),
                }));
            }
            Op::Record(_, reply) => {
                let _ = reply.send(out.and_then(|o| match o {
                    Out::Record => Ok(()),
                    _ => Err(mismatch()),
                }));
            }
        }
    }
}

pub(super) struct HotWriter {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    /// Dropped to stop the checkpointer thread.
    stop_checkpointer: Option<mpsc::Sender<()>>,
    checkpointer: Option<JoinHandle<()>>,
}

impl Drop for HotWriter {
    /// Closing the channel lets the thread finish the transaction in hand and exit; joining it
    /// means the database is closed when the store is gone (a test can reopen it at once).
    fn drop(&mut self) {
        self.stop_checkpointer.take();
        if let Some(thread) = self.checkpointer.take() {
            let _ = thread.join();
        }
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer connection's settings, the same as the sqlx connections' where both have them.
/// (Never lower `synchronous` or turn `cache_spill` back on here: the WAL VFS depends on both.)
fn settle(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The checkpointer thread copies the WAL back (see `checkpoint_in_background`).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // After a burst, the WAL file is cut back to 64 MB when it starts over.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    // Savepoints (the op-by-op path) journal pages in memory, not in a temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Plans that do not depend on the values bound. Without this, SQLite reads the value bound
    // to a `LIMIT ?` while planning, marks the statement to be planned again whenever that
    // parameter is bound anew, and so compiled the claim — a large statement, with its
    // `RETURNING` and subqueries — again on every claim (~480,000 instructions each, 6 % of
    // the server's under `callgrind`). The planner has no statistics to use here anyway
    // (cartero never runs `ANALYZE`).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

impl HotWriter {
    /// Opens the writer's connection to an already migrated database file.
    pub(super) fn open(path: &Path) -> Result<HotWriter, StoreError> {
        // The WAL's writes of a commit go out as one (wal_vfs.rs); without the shim, SQLite's
        // own VFS does the same work in more system calls.
        let conn = match super::wal_vfs::open(path) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "the WAL VFS is unavailable; using SQLite's default");
                Connection::open(path)?
            }
        };
        settle(&conn)?;
        let checkpointer_conn = Connection::open(path)?;
        checkpointer_conn.busy_timeout(Duration::from_secs(10))?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cartero-writer".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| StoreError::Write(format!("starting the writer thread: {e}")))?;
        let (stop_checkpointer, stop) = mpsc::channel();
        let writer = tx.clone();
        let checkpointer = std::thread::Builder::new()
            .name("cartero-checkpoint".into())
            .spawn(move || checkpoint_in_background(checkpointer_conn, stop, writer))
            .map_err(|e| StoreError::Write(format!("starting the checkpointer thread: {e}")))?;
        Ok(HotWriter {
            tx: Some(tx),
            thread: Some(thread),
            stop_checkpointer: Some(stop_checkpointer),
            checkpointer: Some(checkpointer),
        })
    }

    async fn call<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .as_ref()
            .and_then(|tx| tx.send(Msg::Op(op(reply))).ok())
            .ok_or_else(stopped)?;
        answer.await.map_err(|_| stopped())?
    }

    pub(super) async fn enqueue(
        &self,
        batch: Vec<NewMessage>,
        on_commit: Option<OnCommit>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        self.call(|reply| Op::Enqueue(batch, on_commit, reply))
            .await
    }

    pub(super) async fn claim(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        self.call(|reply| Op::Claim {
            now_ms,
            lease_until_ms,
            limit,
            reply,
        })
        .await
    }

    pub(super) async fn record(&self, updates: Arc<[DeliveryUpdate]>) -> Result<(), StoreError> {
        self.call(|reply| Op::Record(updates, reply)).await
    }
}

fn stopped() -> StoreError {
    StoreError::Write("the database writer has stopped".into())
}

/// The ops of the next transaction: `first` and whatever waits behind it. Whether a CatchUp
/// came along is the second value.
///
/// When the previous transaction held at least [`BUSY_OPS`] ops, the writer is busy and more
/// ops are on their way: it then waits up to `linger` for as many as the previous transaction
/// held. Each transaction rewrites every B-tree page it touches, so under load twice the ops
/// per commit measured as ~45 % fewer commits and ~13 % fewer bytes written per message
/// (BENCHMARKS.md). An idle or lightly loaded writer (a few ops per commit, as at 1,000
/// messages/s) never waits.
fn collect(
    rx: &mpsc::Receiver<Msg>,
    first: Msg,
    previous: usize,
    linger: Duration,
) -> (Vec<Op>, bool) {
    let started = Instant::now();
    let goal = if previous >= BUSY_OPS {
        previous.min(MAX_OPS_PER_COMMIT)
    } else {
        0
    };
    let mut ops = Vec::new();
    let mut catch_up = false;
    let mut next = Some(first);
    while let Some(msg) = next {
        match msg {
            Msg::Op(op) => ops.push(op),
            Msg::CatchUp => catch_up = true,
        }
        next = if ops.len() >= MAX_OPS_PER_COMMIT {
            None
        } else if ops.len() < goal {
            match linger.checked_sub(started.elapsed()) {
                Some(left) => rx.try_recv().ok().or_else(|| rx.recv_timeout(left).ok()),
                None => rx.try_recv().ok(),
            }
        } else {
            rx.try_recv().ok()
        };
    }
    (ops, catch_up)
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Msg>) {
    let mut previous = 0;
    while let Ok(first) = rx.recv() {
        let (mut ops, catch_up) = collect(&rx, first, previous, LINGER);
        previous = ops.len();
        if !ops.is_empty() {
            // Claims last, so that they see the submissions of this same transaction.
            ops.sort_by_key(|op| matches!(op, Op::Claim { .. }));
            let (outs, commit) = run_ops(&mut conn, &ops);
            if let Err(e) = &commit {
                tracing::error!(error = %e, ops = ops.len(), "committing a batch of writes failed");
            }
            for (op, out) in ops.into_iter().zip(outs) {
                op.answer(out, &commit);
            }
        }
        if catch_up {
            catch_up_checkpoint(&conn);
        }
    }
}

/// How often the checkpointer thread copies the WAL back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies the WAL back into the database every [`CHECKPOINT_EVERY`] with a PASSIVE checkpoint,
/// which never blocks the writer; the commits themselves stay durable (`synchronous=FULL`
/// fsyncs the WAL). Checkpointing in the committing writer instead stalled the commit that
/// crossed SQLite's threshold (accept-latency spikes of seconds). After each checkpoint the
/// writer is asked to finish it ([`catch_up_checkpoint`]).
fn checkpoint_in_background(conn: Connection, stop: mpsc::Receiver<()>, writer: mpsc::Sender<Msg>) {
    loop {
        match stop.recv_timeout(CHECKPOINT_EVERY) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
        }
        if writer.send(Msg::CatchUp).is_err() {
            return;
        }
    }
}

/// Copies into the database the WAL frames the checkpointer thread did not reach.
///
/// The background checkpoint never catches up while commits keep coming, and SQLite starts the
/// WAL over only once every frame is back in the database: under steady load the WAL grew
/// without end (1 GB in 9 s of the benchmark), every commit extended the file, and the WAL index
/// grew with it. Run here, between two commits, nothing is appended meanwhile, so this PASSIVE
/// checkpoint completes — it only has the frames written since the background one to copy — and
/// the next transaction reuses the WAL from its start.
fn catch_up_checkpoint(conn: &Connection) {
    let started = Instant::now();
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    match result {
        Ok((busy, frames, copied)) => tracing::debug!(
            busy,
            frames,
            copied,
            ms = started.elapsed().as_millis() as u64,
            "WAL catch-up checkpoint"
        ),
        Err(e) => tracing::warn!(error = %e, "WAL catch-up checkpoint failed"),
    }
}

/// Runs `ops` in one transaction and commits. Every op runs straight in the transaction; if
/// one fails, the transaction is rolled back and each op runs again in a savepoint of its own,
/// so the failing one is undone alone and the others still commit. (A savepoint per op on the
/// normal path cost more than the inserts: SQLite copies each page an op first touches into
/// the statement journal.)
fn run_ops(
    conn: &mut Connection,
    ops: &[Op],
) -> (Vec<Result<Out, StoreError>>, Result<(), String>) {
    let at = ts(OffsetDateTime::now_utc());
    let all_failed = |e: &dyn std::fmt::Display| {
        let outs = ops
            .iter()
            .map(|_| Err(StoreError::Write(e.to_string())))
            .collect();
        (outs, Err(e.to_string()))
    };
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return all_failed(&e),
    };
    let together: Result<Vec<Out>, StoreError> =
        ops.iter().map(|op| op.execute(&tx, &at)).collect();
    if let Ok(outs) = together {
        let commit = tx.commit().map_err(|e| e.to_string());
        return (outs.into_iter().map(Ok).collect(), commit);
    }
    drop(tx); // rolls back
    tracing::warn!(
        ops = ops.len(),
        "a write failed; running the batch op by op"
    );
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return all_failed(&e),
    };
    let mut outs = Vec::with_capacity(ops.len());
    for op in ops {
        outs.push(in_savepoint(&mut tx, |c| op.execute(c, &at)));
        // Some errors (a full disk, an I/O error, no memory) make SQLite roll back the whole
        // transaction, not just the statement: then nothing of this batch is written, and
        // going on would commit each later op on its own.
        if tx.is_autocommit() {
            return all_failed(&"the transaction was rolled back by SQLite");
        }
    }
    let commit = tx.commit().map_err(|e| e.to_string());
    (outs, commit)
}

/// Runs one op in its own savepoint: an op that fails is undone alone (dropping the savepoint
/// rolls it back) and answered with its error, while the others still commit.
fn in_savepoint<T>(
    tx: &mut rusqlite::Transaction<'_>,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let sp = tx.savepoint()?;
    let out = f(&sp)?;
    sp.commit()?;
    Ok(out)
}

/// Stores a batch of submissions; an idempotency key seen before (also earlier in this same
/// transaction) answers the first message instead.
fn enqueue(conn: &Connection, batch: &[NewMessage], at: &str) -> Result<Vec<Enqueued>, StoreError> {
    let mut find = conn.prepare_cached(
        "SELECT id, status FROM messages WHERE project_id = ?1 AND idempotency_key = ?2",
    )?;
    let mut message = conn.prepare_cached(
        "INSERT INTO messages (id, project_id, message_type, status, idempotency_key, size_bytes, \
           next_attempt_at, lease_until, expires_at, created_at, updated_at, body_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
    )?;
    // The body first: the message holds its number (the next rowid, appended).
    let mut body = conn.prepare_cached("INSERT INTO message_bodies (content) VALUES (?1)")?;
    let mut recipient = conn.prepare_cached(
        "INSERT INTO message_recipients (message_id, position, address, kind, status) \
         VALUES (?1, ?2, ?3, ?4, 'pending')",
    )?;
    let mut out = Vec::with_capacity(batch.len());
    for m in batch {
        if let Some(key) = &m.idempotency_key {
            let existing: Option<(String, String)> = find
                .query_row(params![m.project_id, key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((id, status)) = existing {
                let status = MessageStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?;
                out.push(Enqueued::Existing { id, status });
                continue;
            }
        }
        // A message handed straight to this node's dispatcher is stored as already claimed.
        let status = if m.lease_until_ms.is_some() {
            MessageStatus::Sending
        } else {
            MessageStatus::Queued
        };
        let body_id = body.insert(params![m.content])?;
        message.execute(params![
            m.id,
            m.project_id,
            m.message_type,
            status.as_str(),
            m.idempotency_key,
            m.size as i64,
            m.now_ms,
            m.lease_until_ms,
            m.expires_at_ms,
            at,
            body_id,
        ])?;
        for (position, (address, kind)) in m.recipients.iter().enumerate() {
            recipient.execute(params![m.id, position as i64, address, kind.as_str()])?;
        }
        out.push(Enqueued::New);
    }
    Ok(out)
}

/// Due messages become `sending` under a lease (?1): those due by ?2, oldest first, at most ?3.
const CLAIM: &str = concat!(
    "UPDATE messages SET status = 'sending', lease_until = ?1 \
     WHERE id IN (SELECT id FROM messages WHERE status IN ('queued', 'deferred') \
                  AND next_attempt_at <= ?2 ORDER BY next_attempt_at LIMIT ?3) \
     RETURNING id, project_id, message_type, message_id_header, attempt_count, expires_at, \
       (SELECT content FROM message_bodies b WHERE b.id = messages.body_id) AS content, ",
    recipients_of_messages!(),
    " AS recipients"
);

/// Claims up to `limit` due messages: their status becomes `sending` under a lease, and each
/// comes with its body and recipients.
fn claim(
    conn: &Connection,
    now_ms: i64,
    lease_until_ms: i64,
    limit: i64,
) -> Result<Vec<ClaimedMessage>, StoreError> {
    let mut stmt = conn.prepare_cached(CLAIM)?;
    let mut rows = stmt.query(params![lease_until_ms, now_ms, limit])?;
    let mut claimed = Vec::new();
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let content: Option<String> = row.get(6)?;
        let recipients: String = row.get(7)?;
        claimed.push(ClaimedMessage {
            content: ClaimedContent::Stored(
                content.ok_or_else(|| StoreError::Corrupt(format!("message {id} has no body")))?,
            ),
            recipients: recipients_from_json(&recipients)?,
            project_id: row.get(1)?,
            message_type: row.get(2)?,
            message_id_header: row.get(3)?,
            attempt_count: row.get(4)?,
            expires_at_ms: row.get(5)?,
            id,
        });
    }
    Ok(claimed)
}

/// Writes what delivery rounds did: the message's status, its recipients, the attempts with
/// their transcripts, the events, and the sends that count against account limits.
fn record(conn: &Connection, updates: &[DeliveryUpdate], at: &str) -> Result<(), StoreError> {
    let mut message = conn.prepare_cached(
        "UPDATE messages SET status = ?2, next_attempt_at = ?3, lease_until = NULL, \
           account_id = COALESCE(?4, account_id), \
           message_id_header = COALESCE(?5, message_id_header), \
           last_code = ?6, last_reply = ?7, attempt_count = attempt_count + ?8, updated_at = ?9 \
         WHERE id = ?1 AND status = 'sending'",
    )?;
    // The message's number, for its rows in `attempts` and `events`. (A `RETURNING` on the
    // update costs more: SQLite runs it as a trigger into a temporary table.)
    let mut number_of = conn.prepare_cached(NUMBER_OF_MESSAGE)?;
    let mut recipient = conn.prepare_cached(
        "UPDATE message_recipients SET status = ?3, reply = ?4 \
         WHERE message_id = ?1 AND position = ?2",
    )?;
    let mut attempt = conn.prepare_cached(insert_next_row!(
        "attempts",
        "?1",
        "account_id, account_name, started_at, duration_ms, outcome, reply, diagnosis_code, \
         note, transcript",
        "?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10"
    ))?;
    let mut event = conn.prepare_cached(insert_next_row!(
        "events",
        "?1",
        "kind, detail, at",
        "?2, ?3, ?4"
    ))?;
    let mut send = conn.prepare_cached(
        "INSERT INTO account_sends (account_id, minute, count) VALUES (?1, ?2, ?3) \
         ON CONFLICT (account_id, minute) DO UPDATE SET count = count + excluded.count",
    )?;
    // Sends counted per account and minute across the batch: one upsert each, not one per
    // message (a batch is mostly one account within one minute).
    let mut sends: Vec<(&str, i64, i64)> = Vec::new();
    for u in updates {
        message.execute(params![
            u.message_id,
            u.status.as_str(),
            u.next_attempt_at_ms,
            u.account_id,
            u.message_id_header,
            u.last_code,
            u.last_reply,
            u.attempts.len() as i64,
            at,
        ])?;
        for (position, status, reply) in &u.recipients {
            recipient.execute(params![u.message_id, position, status, reply])?;
        }
        // A message no longer `sending` (its lease ran out) still keeps what the round did; a
        // message that is gone (or has no number) has nowhere to keep it.
        let number: Option<i64> = if u.attempts.is_empty() && u.events.is_empty() {
            None
        } else {
            number_of
                .query_row(params![u.message_id], |r| r.get(0))
                .optional()?
                .flatten()
        };
        if let Some(number) = number {
            for a in &u.attempts {
                let transcript =
                    serde_json::to_string(&a.transcript).unwrap_or_else(|_| "[]".to_string());
                attempt.execute(params![
                    number,
                    a.account_id,
                    a.account_name,
                    ts(a.started_at),
                    a.duration_ms,
                    a.outcome,
                    a.reply,
                    a.diagnosis_code,
                    a.note,
                    transcript,
                ])?;
            }
            for (kind, detail) in &u.events {
                event.execute(params![number, kind, detail, at])?;
            }
        }
        for (account, minute) in &u.sends {
            match sends
                .iter_mut()
                .find(|(a, m, _)| *a == account.as_str() && m == minute)
            {
                Some((_, _, count)) => *count += 1,
                None => sends.push((account.as_str(), *minute, 1)),
            }
        }
    }
    for (account, minute, count) in sends {
        send.execute(params![account, minute, count])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::message::RecipientKind;
    use crate::store::Store;

    fn message(id: &str, project: &str, key: Option<&str>) -> NewMessage {
        NewMessage {
            id: id.into(),
            project_id: project.into(),
            message_type: "system".into(),
            content: "{}".into(),
            size: 2,
            idempotency_key: key.map(str::to_string),
            recipients: vec![("ana@example.com".into(), RecipientKind::To)],
            now_ms: 1,
            expires_at_ms: 2,
            lease_until_ms: None,
        }
    }

    fn enqueue_op(batch: Vec<NewMessage>) -> Op {
        let (reply, _answer) = oneshot::channel();
        Op::Enqueue(batch, None, reply)
    }

    fn op_msg() -> Msg {
        Msg::Op(enqueue_op(vec![message("m", "p", None)]))
    }

    #[test]
    fn an_idle_writer_commits_at_once() {
        let (tx, rx) = mpsc::channel();
        let later = tx.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let _ = later.send(op_msg());
        });
        // A light previous commit: nothing to wait for, even with a long linger.
        let (ops, _) = collect(&rx, op_msg(), BUSY_OPS - 1, Duration::from_secs(10));
        assert_eq!(ops.len(), 1);
        drop(tx);
    }

    #[test]
    fn a_busy_writer_waits_for_as_many_ops_as_last_time() {
        let (tx, rx) = mpsc::channel();
        let later = tx.clone();
        std::thread::spawn(move || {
            for _ in 0..BUSY_OPS {
                std::thread::sleep(Duration::from_millis(5));
                let _ = later.send(op_msg());
            }
        });
        let started = Instant::now();
        let (ops, _) = collect(&rx, op_msg(), BUSY_OPS, Duration::from_secs(10));
        // It stopped at the goal (the previous size), not at the linger or at what came later.
        assert_eq!(ops.len(), BUSY_OPS);
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(tx);
    }

    #[test]
    fn a_busy_writer_waits_no_longer_than_the_linger() {
        let (tx, rx) = mpsc::channel();
        let started = Instant::now();
        let (ops, catch_up) = collect(&rx, Msg::CatchUp, 64, Duration::from_millis(30));
        assert!(ops.is_empty() && catch_up);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(30), "waited {waited:?}");
        drop(tx);
    }

    async fn migrated() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cartero.db");
        let store = super::super::SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        drop(store);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        (dir, conn)
    }

    /// `.cargo/config.toml` sets how the bundled SQLite is compiled; a build that lost it
    /// would share one locked page cache among all connections again.
    #[test]
    fn sqlite_is_built_with_a_page_cache_per_connection() {
        let conn = Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }

    /// Claims of 1, 2 and 3 messages from `conn`'s queue of six: how many each took, and how
    /// often SQLite compiled the claim again meanwhile.
    fn claims_and_recompiles(conn: &Connection) -> (Vec<usize>, i32) {
        conn.flush_prepared_statement_cache();
        let taken = (1..=3)
            .map(|limit| claim(conn, 10, 20, limit).unwrap().len())
            .collect();
        let stmt = conn.prepare_cached(CLAIM).unwrap();
        (taken, stmt.get_status(rusqlite::StatementStatus::RePrepare))
    }

    #[tokio::test]
    async fn a_claim_is_compiled_once_whatever_its_limit() {
        let (_dir, conn) = migrated().await;
        let batch = (0..6)
            .map(|i| message(&format!("m{i}"), "default", None))
            .collect::<Vec<_>>();
        enqueue(&conn, &batch, "2026-12-02T00:00:00Z").unwrap();
        // SQLite's default: binding the LIMIT calls for a new plan, on every claim.
        assert_eq!(claims_and_recompiles(&conn), (vec![1, 2, 3], 3));
        conn.execute("UPDATE messages SET status = 'queued'", [])
            .unwrap();
        settle(&conn).unwrap();
        assert_eq!(claims_and_recompiles(&conn), (vec![1, 2, 3], 0));
    }

    fn count(conn: &Connection, id: &str) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM messages WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
    }

    fn sent(id: &str, sends: &[(&str, i64)]) -> DeliveryUpdate {
        DeliveryUpdate {
            message_id: id.into(),
            status: MessageStatus::Sent,
            next_attempt_at_ms: 0,
            account_id: None,
            message_id_header: None,
            last_code: None,
            last_reply: None,
            recipients: vec![],
            attempts: vec![],
            events: vec![],
            sends: sends.iter().map(|(a, m)| (a.to_string(), *m)).collect(),
        }
    }

    /// The sends of a batch are summed per account and minute, and add to what is stored.
    #[tokio::test]
    async fn sends_add_up_per_account_and_minute() {
        let (_dir, conn) = migrated().await;
        let batch = [
            sent("m1", &[("a", 10)]),
            sent("m2", &[("a", 10)]),
            sent("m3", &[("a", 11), ("b", 10)]),
        ];
        record(&conn, &batch, "t").unwrap();
        record(&conn, &batch[..1], "t").unwrap();
        let mut rows: Vec<(String, i64, i64)> = conn
            .prepare("SELECT account_id, minute, count FROM account_sends ORDER BY 1, 2")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            vec![
                ("a".to_string(), 10, 3),
                ("a".to_string(), 11, 1),
                ("b".to_string(), 10, 1)
            ]
        );
    }

    /// One op that fails (a project that does not exist) is undone alone; the ops beside it in
    /// the same transaction still commit.
    #[tokio::test]
    async fn a_failing_op_does_not_sink_the_others() {
        let (_dir, mut conn) = migrated().await;
        let ops = vec![
            enqueue_op(vec![message("m1", "default", None)]),
            enqueue_op(vec![message("m2", "no-such-project", None)]),
            enqueue_op(vec![message("m3", "default", None)]),
        ];
        let (outs, commit) = run_ops(&mut conn, &ops);
        assert!(commit.is_ok(), "{commit:?}");
        assert!(matches!(outs[0], Ok(Out::Enqueue(_))));
        assert!(outs[1].is_err());
        assert!(matches!(outs[2], Ok(Out::Enqueue(_))));
        assert_eq!(
            (count(&conn, "m1"), count(&conn, "m2"), count(&conn, "m3")),
            (1, 0, 1)
        );
        // Nothing half-written for the refused one: its body (written before its message
        // failed) went with it.
        let bodies: (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COUNT(m.id) FROM message_bodies b \
                 LEFT JOIN messages m ON m.body_id = b.id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(bodies, (2, 2));
    }

    /// The same idempotency key twice in one transaction: the second answers the first.
    #[tokio::test]
    async fn a_repeated_key_in_one_commit_answers_the_first_message() {
        let (_dir, mut conn) = migrated().await;
        let ops = vec![
            enqueue_op(vec![message("m1", "default", Some("k"))]),
            enqueue_op(vec![message("m2", "default", Some("k"))]),
        ];
        let (outs, commit) = run_ops(&mut conn, &ops);
        assert!(commit.is_ok());
        match &outs[1] {
            Ok(Out::Enqueue(v)) => assert_eq!(
                v[0],
                Enqueued::Existing {
                    id: "m1".into(),
                    status: MessageStatus::Queued
                }
            ),
            _ => panic!("expected the first message's answer"),
        }
        assert_eq!(count(&conn, "m2"), 0);
    }

    /// A caller that stops waiting once its submission is on its way (a client that hangs up)
    /// does not stop what follows the commit: `on_commit` still runs, with the outcome.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_commit_runs_when_the_caller_stopped_waiting() {
        use futures_util::FutureExt;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cartero.db").display());
        let store = super::super::SqliteStore::open(&url).await.unwrap();
        let (told, outcome) = mpsc::channel();
        let on_commit: OnCommit = Box::new(move |out| {
            let _ = told.send(match out {
                Ok(v) => Ok(v.clone()),
                Err(e) => Err(e.to_string()),
            });
        });
        // Polled once: the op goes to the writer; then the caller drops the future.
        let waiting = store.enqueue(vec![message("m1", "default", None)], Some(on_commit));
        assert!(
            waiting.now_or_never().is_none(),
            "answered before the commit"
        );
        let out = outcome.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(out, Ok(vec![Enqueued::New]));
        assert_eq!(
            store
                .get_message("default", "m1")
                .await
                .unwrap()
                .unwrap()
                .id,
            "m1"
        );
    }

    /// The store's own path: concurrent submissions through the writer all commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submissions_all_commit() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cartero.db").display());
        let store = std::sync::Arc::new(super::super::SqliteStore::open(&url).await.unwrap());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .enqueue(vec![message(&format!("m{i}"), "default", None)], None)
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), vec![Enqueued::New]);
        }
        let due = store.claim_due(10, 1000, 500).await.unwrap();
        assert_eq!(due.len(), 200);
    }

    /// Under steady writes the WAL starts over instead of growing without end: 200 MB written
    /// over 2.5 s leave a WAL of at most the 64 MB size limit plus one checkpoint interval.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_bounded_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cartero.db");
        let store = super::super::SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let body = "x".repeat(64 * 1024);
        let mut written = 0usize;
        let mut n = 0;
        let start = std::time::Instant::now();
        while written < 200 * 1024 * 1024 {
            let batch: Vec<NewMessage> = (0..125)
                .map(|_| {
                    n += 1;
                    let mut m = message(&format!("m{n}"), "default", None);
                    m.content = body.clone();
                    m
                })
                .collect();
            written += 125 * body.len();
            store.enqueue(batch, None).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let wal = std::fs::metadata(dir.path().join("cartero.db-wal"))
            .unwrap()
            .len();
        assert!(
            wal < 100 * 1024 * 1024,
            "WAL is {wal} bytes after {written} bytes written in {:?}",
            start.elapsed()
        );
    }

    /// A message stored as handed over whose delivery never reported back goes back to the
    /// queue once its lease has run out, and not before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_lease_goes_back_to_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cartero.db").display());
        let store = super::super::SqliteStore::open(&url).await.unwrap();
        let mut handed = message("m1", "default", None);
        handed.lease_until_ms = Some(1_000);
        store.enqueue(vec![handed], None).await.unwrap();
        assert!(store.claim_due(2_000, 1000, 10).await.unwrap().is_empty());
        assert_eq!(store.requeue_expired_leases(999).await.unwrap(), 0);
        assert_eq!(store.requeue_expired_leases(1_001).await.unwrap(), 1);
        let due = store.claim_due(2_000, 1000, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, "m1");
    }
}
