//! The SMTP transport of delivery: at most a set number of authenticated connections per
//! account, and one mail transaction (RFC 5321 §3.3) per message — MAIL FROM and every RCPT
//! TO pipelined when the server offers PIPELINING (RFC 2920), then DATA.
//!
//! A connection is reused while it is healthy and younger than the idle limit; any I/O error,
//! timeout or unexpected reply drops it. Pool keys include the account's `updated_at`, so a
//! changed password or host never uses an old connection.
//!
//! When every connection of an account is busy, transactions wait in line for one. A
//! transaction about to send its body on a pipelining server writes the MAIL, RCPT and DATA
//! of the first one waiting right behind its final dot, in the same write, and hands it the
//! connection once its own reply is read: one write and one read per message instead of two
//! of each, on both sides.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smtp_proto::EhloResponse;
use tokio::sync::oneshot;

use crate::domain::account::{AccountSpec, AuthMethod, Security};
use crate::domain::diagnosis::{Failure, SmtpReply, Stage};
use crate::secrets::Secret;
use crate::smtp::{self, Conn, Session, Timeouts};
use crate::tls::{TlsTrust, Verification};

/// How long an idle connection may wait in the pool.
const IDLE_LIMIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// Connections open to one account's server at most, idle or busy; a transaction waits
    /// for one to free up beyond that.
    pub connections_per_account: usize,
    pub timeouts: Timeouts,
    pub trust: TlsTrust,
    pub helo_name: String,
    pub deny_private_destinations: bool,
}

/// The account as the transport needs it.
pub struct Target<'a> {
    /// Pool key: the account id and its last change.
    pub key: String,
    pub spec: &'a AccountSpec,
    pub password: Option<Secret>,
}

/// What one transaction did.
#[derive(Debug, Default)]
pub struct TxReport {
    /// Per recipient, in the order given: the server's reply to RCPT TO.
    pub rcpts: Vec<Option<SmtpReply>>,
    /// The reply after the message body, when DATA was reached.
    pub data: Option<SmtpReply>,
    /// What stopped the transaction before the recipients were settled, if anything.
    pub failure: Option<Failure>,
    pub transcript: Vec<String>,
}

impl TxReport {
    /// Whether a reply said the server is closing the connection (421).
    fn closing(&self) -> bool {
        let failure_reply = match &self.failure {
            Some(Failure::Reply { reply, .. }) => Some(reply),
            _ => None,
        };
        self.rcpts
            .iter()
            .flatten()
            .chain(self.data.as_ref())
            .chain(failure_reply)
            .any(|r| r.code == 421)
    }
}

/// A message's envelope, as a transaction waiting for a connection shows it to the one that
/// may write its commands.
struct Envelope {
    from: String,
    rcpts: Vec<String>,
    size: usize,
}

impl Envelope {
    /// MAIL FROM and the RCPT TOs; DATA too when the server pipelines (RFC 2920 §3.1: DATA
    /// may end a pipelined group).
    fn commands(&self, caps: &EhloResponse<String>) -> Vec<String> {
        let size = if caps.size > 0 {
            format!(" SIZE={}", self.size)
        } else {
            String::new()
        };
        let mut commands = Vec::with_capacity(self.rcpts.len() + 2);
        commands.push(format!("MAIL FROM:<{}>{size}\r\n", self.from));
        commands.extend(self.rcpts.iter().map(|r| format!("RCPT TO:<{r}>\r\n")));
        if pipelines(caps) {
            commands.push("DATA\r\n".to_string());
        }
        commands
    }

    fn fits(&self, caps: &EhloResponse<String>) -> bool {
        caps.size == 0 || self.size <= caps.size
    }
}

fn pipelines(caps: &EhloResponse<String>) -> bool {
    caps.capabilities & smtp_proto::EXT_PIPELINING != 0
}

type Lanes = Arc<Mutex<HashMap<String, Lane>>>;

/// One account's connections: how many are open, the idle ones, and who waits for one.
#[derive(Default)]
struct Lane {
    open: usize,
    idle: Vec<Idle>,
    waiters: VecDeque<Waiter>,
}

impl Lane {
    /// The first transaction still waiting (those that gave up leave the line here).
    fn first_waiting(&mut self) -> Option<&Waiter> {
        while self.waiters.front().is_some_and(|w| w.tx.is_closed()) {
            self.waiters.pop_front();
        }
        self.waiters.front()
    }
}

/// Leave to keep one connection open to an account; dropping it frees the place for the
/// first one waiting (as leave to open a new connection), or else lowers the count.
struct Slot {
    lanes: Lanes,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let next = {
            let mut lanes = self.lanes.lock().expect("not poisoned");
            let Some(lane) = lanes.get_mut(&self.key) else {
                return;
            };
            if lane.first_waiting().is_some() {
                lane.waiters.pop_front()
            } else {
                lane.open = lane.open.saturating_sub(1);
                if lane.open == 0 {
                    // Nothing left of this account's connections (or of a key an account
                    // change left behind).
                    lanes.remove(&self.key);
                }
                None
            }
        };
        if let Some(w) = next {
            // If that one stopped waiting meanwhile, the refused grant drops here and its
            // slot goes to the next in line.
            let _ = w.tx.send(Grant::Open(Slot {
                lanes: self.lanes.clone(),
                key: std::mem::take(&mut self.key),
            }));
        }
    }
}

struct Idle {
    session: Session,
    caps: EhloResponse<String>,
    since: Instant,
    slot: Slot,
}

impl Idle {
    fn new(session: Session, caps: EhloResponse<String>, slot: Slot) -> Idle {
        Idle {
            session,
            caps,
            since: Instant::now(),
            slot,
        }
    }
}

/// What becomes of a connection after a transaction that ended in a reply.
enum After {
    Keep,
    Retire,
}

/// The place of a connection that closes: to the transaction whose commands it carried (they
/// were written on a connection that is gone, so it opens another), else to the first one
/// waiting.
fn hand_place(slot: Slot, behind: Option<Waiter>) {
    match behind {
        Some(next) => {
            let _ = next.tx.send(Grant::Open(slot));
        }
        None => drop(slot),
    }
}

/// How a transaction gets its connection.
enum Grant {
    /// An open connection nobody uses.
    Idle(Idle),
    /// An open connection on which the previous transaction wrote this one's commands behind
    /// its body: their replies are due.
    Presented(Idle),
    /// Room for one more connection: open it.
    Open(Slot),
}

struct Waiter {
    envelope: Arc<Envelope>,
    tx: oneshot::Sender<Grant>,
}

pub struct Transport {
    settings: TransportSettings,
    lanes: Lanes,
}

impl Transport {
    pub fn new(settings: TransportSettings) -> Transport {
        Transport {
            settings,
            lanes: Arc::default(),
        }
    }

    /// A connection to the account: an idle one, leave to open one, or — when the account has
    /// all it may open — whatever frees first. `None` once the transport has been cleared.
    async fn acquire(&self, key: &str, envelope: &Arc<Envelope>) -> Option<Grant> {
        let mut expired = Vec::new();
        let rx = {
            let mut lanes = self.lanes.lock().expect("not poisoned");
            let lane = lanes.entry(key.to_string()).or_default();
            let mut found = None;
            while let Some(i) = lane.idle.pop() {
                if i.since.elapsed() < IDLE_LIMIT {
                    found = Some(Grant::Idle(i));
                    break;
                }
                expired.push(i);
            }
            if found.is_none() {
                if let Some(old) = expired.pop() {
                    // A connection kept too long: its place serves a new one.
                    found = Some(Grant::Open(old.slot));
                } else if lane.open < self.settings.connections_per_account.max(1) {
                    lane.open += 1;
                    found = Some(Grant::Open(Slot {
                        lanes: self.lanes.clone(),
                        key: key.to_string(),
                    }));
                }
            }
            match found {
                Some(grant) => {
                    drop(lanes);
                    drop(expired);
                    return Some(grant);
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    lane.waiters.push_back(Waiter {
                        envelope: envelope.clone(),
                        tx,
                    });
                    rx
                }
            }
        };
        // (Dropped outside the lock: a slot's drop takes it.)
        drop(expired);
        rx.await.ok()
    }

    /// Gives a connection that stays usable to the first one waiting, or keeps it idle.
    fn release(&self, key: &str, mut idle: Idle) {
        loop {
            let waiter = {
                let mut lanes = self.lanes.lock().expect("not poisoned");
                let Some(lane) = lanes.get_mut(key) else {
                    break;
                };
                match lane.waiters.pop_front() {
                    Some(w) => w,
                    None => {
                        idle.since = Instant::now();
                        lane.idle.push(idle);
                        return;
                    }
                }
            };
            match waiter.tx.send(Grant::Idle(idle)) {
                Ok(()) => return,
                Err(Grant::Idle(back)) => idle = back,
                Err(_) => unreachable!("the grant sent comes back"),
            }
        }
        // The transport was cleared: the connection closes here, outside the lock.
        drop(idle);
    }

    /// The first transaction waiting for a connection, if its commands may be written behind
    /// a body on a connection with these capabilities.
    fn next_waiting(&self, key: &str, caps: &EhloResponse<String>) -> Option<Waiter> {
        if !pipelines(caps) {
            return None;
        }
        let mut lanes = self.lanes.lock().expect("not poisoned");
        let lane = lanes.get_mut(key)?;
        if !lane.first_waiting()?.envelope.fits(caps) {
            // Too large for this server: it gets the connection after this transaction and
            // its own refusal without a word sent.
            return None;
        }
        lane.waiters.pop_front()
    }

    /// Drops every pooled connection (at shutdown); transactions still waiting get none.
    pub fn clear(&self) {
        let lanes = std::mem::take(&mut *self.lanes.lock().expect("not poisoned"));
        drop(lanes);
    }

    /// Closes the idle connections of one account (one of them was found closed by the
    /// server, so those kept as long likely are too).
    fn drop_idle(&self, key: &str) {
        let idle = self
            .lanes
            .lock()
            .expect("not poisoned")
            .get_mut(key)
            .map(|lane| std::mem::take(&mut lane.idle));
        drop(idle);
    }

    /// Opens an authenticated session to the account's server.
    async fn open(
        &self,
        target: &Target<'_>,
    ) -> Result<(Session, EhloResponse<String>), (Failure, Vec<String>)> {
        let spec = target.spec;
        let t = self.settings.timeouts;
        let host = spec.host.as_str();
        let verification = Verification::of(spec);
        let no_lines = |f| (f, Vec::new());
        let addrs = smtp::resolve(
            host,
            spec.port.get(),
            t.connect,
            self.settings.deny_private_destinations,
        )
        .await
        .map_err(no_lines)?;
        let tcp = smtp::connect(&addrs, t.connect).await.map_err(no_lines)?;
        let conn = if spec.security == Security::Tls {
            let (tls, _) = smtp::handshake(
                tcp,
                host,
                &self.settings.trust,
                verification.clone(),
                t.reply,
            )
            .await
            .map_err(|(f, _)| (f, Vec::new()))?;
            Conn::Tls(Box::new(tls))
        } else {
            Conn::Plain(tcp)
        };
        let mut session = Session::new(conn, host, t.reply);
        let lines_of = |s: &Session| s.transcript().lock().expect("not poisoned").drain_lines();
        macro_rules! step {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(f) => return Err((f, lines_of(&session))),
                }
            };
        }
        step!(session.greeting().await);
        let (mut caps, mut lines) = step!(session.ehlo(&self.settings.helo_name).await);
        if spec.security == Security::Starttls {
            if !lines.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
                return Err((Failure::StarttlsNotOffered, lines_of(&session)));
            }
            step!(
                session
                    .starttls(&self.settings.trust, verification)
                    .await
                    .map_err(|(f, _)| f)
            );
            (caps, lines) = step!(session.ehlo(&self.settings.helo_name).await);
        }
        if spec.auth == AuthMethod::Password {
            let Some(password) = &target.password else {
                return Err((Failure::MissingPassword, lines_of(&session)));
            };
            let username = spec.username.clone().unwrap_or_default();
            step!(
                session
                    .authenticate(
                        &caps,
                        &lines,
                        &username,
                        password.expose(),
                        spec.microsoft365
                    )
                    .await
            );
        }
        Ok((session, caps))
    }

    /// One mail transaction: sends `message` from `envelope_from` to `rcpts`, on a pooled
    /// connection when one is idle, else on a new one, else on the first that frees up.
    pub async fn send(
        &self,
        target: &Target<'_>,
        envelope_from: &str,
        rcpts: &[String],
        message: &[u8],
    ) -> TxReport {
        let envelope = Arc::new(Envelope {
            from: envelope_from.to_string(),
            rcpts: rcpts.to_vec(),
            size: message.len(),
        });
        let mut earlier: Vec<String> = Vec::new();
        let mut retried = false;
        loop {
            let Some(grant) = self.acquire(&target.key, &envelope).await else {
                return TxReport {
                    rcpts: vec![None; rcpts.len()],
                    failure: Some(Failure::ConnectionLost {
                        stage: Stage::Connect,
                        error: "cartero is shutting down".into(),
                    }),
                    transcript: earlier,
                    ..TxReport::default()
                };
            };
            let (idle, presented, fresh) = match grant {
                Grant::Idle(i) => (i, false, false),
                Grant::Presented(i) => (i, true, false),
                Grant::Open(slot) => match self.open(target).await {
                    Err((failure, mut lines)) => {
                        drop(slot);
                        earlier.append(&mut lines);
                        return TxReport {
                            rcpts: vec![None; rcpts.len()],
                            failure: Some(failure),
                            transcript: earlier,
                            ..TxReport::default()
                        };
                    }
                    Ok((session, caps)) => (Idle::new(session, caps, slot), false, true),
                },
            };
            let (mut report, stale) = self
                .run_on(&target.key, idle, presented, &envelope, message)
                .await;
            earlier.append(&mut report.transcript);
            if stale && !fresh && !retried {
                // The server had closed a kept connection before answering anything: once
                // more, keeping what the dead one showed.
                retried = true;
                self.drop_idle(&target.key);
                continue;
            }
            report.transcript = earlier;
            return report;
        }
    }

    /// Runs the transaction on `idle`'s connection, then passes the connection on (to the
    /// transaction whose commands went out behind this body, to the next one waiting, or to
    /// the pool) if it stays usable. Says whether the connection was found dead before any
    /// reply (a stale pooled one).
    async fn run_on(
        &self,
        key: &str,
        idle: Idle,
        presented: bool,
        envelope: &Envelope,
        message: &[u8],
    ) -> (TxReport, bool) {
        let Idle {
            mut session,
            caps,
            slot,
            ..
        } = idle;
        let mut report = TxReport {
            rcpts: vec![None; envelope.rcpts.len()],
            ..TxReport::default()
        };
        let (outcome, behind) = self
            .transaction(
                key,
                &mut session,
                &caps,
                presented,
                envelope,
                message,
                &mut report,
            )
            .await;
        {
            let transcript = session.transcript();
            let mut t = transcript.lock().expect("not poisoned");
            // Split where the next transaction's commands were written behind the body; not
            // if writing the body failed first.
            let lines = match behind {
                Some(_) => t.take_previous().unwrap_or_else(|| t.drain_lines()),
                None => t.drain_lines(),
            };
            report.transcript.splice(0..0, lines);
        }
        let untouched = report.data.is_none() && report.rcpts.iter().all(Option::is_none);
        let outcome = match outcome {
            // 421: the server is closing the connection (RFC 5321 §3.8).
            Ok(After::Keep) if report.closing() => Ok(After::Retire),
            // The server said more than it was asked: not a connection to trust again. (With
            // commands written behind the body, what follows its reply is theirs.)
            Ok(After::Keep) if behind.is_none() && session.has_unread() => Ok(After::Retire),
            other => other,
        };
        match (outcome, behind) {
            (Ok(After::Keep), None) => {
                self.release(key, Idle::new(session, caps, slot));
                (report, false)
            }
            (Ok(After::Keep), Some(next)) => {
                // If that one stopped waiting, its commands are on the wire unanswered: the
                // refused grant drops here and the connection closes without QUIT, which
                // the server might take as message text.
                let _ = next
                    .tx
                    .send(Grant::Presented(Idle::new(session, caps, slot)));
                (report, false)
            }
            (Ok(After::Retire), behind) => {
                if behind.is_none() {
                    session.quit().await;
                }
                hand_place(slot, behind);
                (report, false)
            }
            (Err(f), behind) => {
                let stale = untouched
                    && matches!(f, Failure::ConnectionLost { .. } | Failure::ReplyTimeout(_));
                // Once the body has begun, QUIT would flush what is left of it, final dot
                // included: the server could take a message reported as failed (and retried).
                let body_begun = matches!(
                    f,
                    Failure::ConnectionLost {
                        stage: Stage::Data,
                        ..
                    } | Failure::ReplyTimeout(Stage::Data)
                );
                report.failure = Some(f);
                if behind.is_none() && !body_begun {
                    session.quit().await;
                }
                hand_place(slot, behind);
                (report, stale)
            }
        }
    }

    /// MAIL, RCPT…, DATA on an open session — or, when `presented`, the replies to them, the
    /// previous transaction having written them. `Err` means the connection failed.
    /// Also returns the transaction waiting for a connection whose commands were written
    /// behind this body, if any.
    #[allow(clippy::too_many_arguments)]
    async fn transaction(
        &self,
        key: &str,
        session: &mut Session,
        caps: &EhloResponse<String>,
        presented: bool,
        envelope: &Envelope,
        message: &[u8],
        report: &mut TxReport,
    ) -> (Result<After, Failure>, Option<Waiter>) {
        if !presented && !envelope.fits(caps) {
            report.failure = Some(Failure::Reply {
                stage: Stage::MailFrom,
                reply: SmtpReply::new(
                    552,
                    Some((5, 3, 4)),
                    format!(
                        "the message is {} bytes; the server accepts at most {} (SIZE)",
                        message.len(),
                        caps.size
                    ),
                ),
            });
            return (Ok(After::Keep), None);
        }
        let pipelining = pipelines(caps);
        let commands = envelope.commands(caps);
        let lost = |stage: Stage, e: mail_send::Error| match e {
            mail_send::Error::Timeout => Failure::ReplyTimeout(stage),
            other => Failure::ConnectionLost {
                stage,
                error: other.to_string(),
            },
        };
        let mut replies: Vec<SmtpReply> = if pipelining {
            let answered = async {
                if !presented {
                    session.write_commands(&commands).await?;
                }
                session.read_replies(commands.len()).await
            };
            match answered.await {
                Ok(r) => r.iter().map(smtp::to_reply).collect(),
                Err(e) => return (Err(lost(Stage::MailFrom, e)), None),
            }
        } else {
            let mut out = Vec::with_capacity(commands.len());
            for (i, c) in commands.iter().enumerate() {
                let stage = if i == 0 {
                    Stage::MailFrom
                } else {
                    Stage::RcptTo
                };
                let r = match session.exchange(c).await {
                    Ok(r) => smtp::to_reply(&r),
                    Err(e) => return (Err(lost(stage, e)), None),
                };
                let refused_sender = i == 0 && !(200..300).contains(&r.code);
                out.push(r);
                if refused_sender {
                    break;
                }
            }
            out
        };
        // With pipelining, the last reply answers DATA.
        let data_go = if pipelining { replies.pop() } else { None };
        let data_open = data_go.as_ref().is_some_and(|r| r.code == 354);
        let mail = &replies[0];
        if !(200..300).contains(&mail.code) {
            report.failure = Some(Failure::Reply {
                stage: Stage::MailFrom,
                reply: mail.clone(),
            });
            return (Ok(end_transaction(session, data_open).await), None);
        }
        for (slot, reply) in report.rcpts.iter_mut().zip(replies.iter().skip(1)) {
            *slot = Some(reply.clone());
        }
        let accepted = report
            .rcpts
            .iter()
            .flatten()
            .filter(|r| (200..300).contains(&r.code))
            .count();
        if accepted == 0 {
            return (Ok(end_transaction(session, data_open).await), None);
        }
        let mut behind = None;
        let sent = match data_go {
            None => session.data(message).await,
            Some(_) if data_open => {
                behind = self.next_waiting(key, caps);
                let next = behind.as_ref().map(|w| w.envelope.commands(caps));
                session.body(message, next.as_deref()).await
            }
            Some(reply) => Err(Failure::Reply {
                stage: Stage::Data,
                reply,
            }),
        };
        let outcome = match sent {
            Ok(reply) => {
                report.data = Some(reply);
                Ok(After::Keep)
            }
            Err(Failure::Reply { stage, reply }) => {
                report.data = Some(reply.clone());
                report.failure = Some(Failure::Reply { stage, reply });
                // After a refused DATA the connection stays usable; RSET makes sure the server
                // holds no half-open transaction for the next message — unless the next one's
                // commands already follow (the final reply ended this transaction anyway,
                // RFC 5321 §4.1.1.4).
                if behind.is_some() || session.rset().await {
                    Ok(After::Keep)
                } else {
                    Ok(After::Retire)
                }
            }
            Err(f) => Err(f),
        };
        (outcome, behind)
    }
}

/// Ends a transaction that sends no message: the data phase a pipelined DATA opened, if the
/// server answered it 354, then RSET. A server that does not answer them is not used again.
async fn end_transaction(session: &mut Session, data_open: bool) -> After {
    if data_open && !session.abandon_data().await {
        return After::Retire;
    }
    if session.rset().await {
        After::Keep
    } else {
        After::Retire
    }
}

#[cfg(test)]
mod tests {
    //! The connection places of one account, without any connection: `Open` grants are what
    //! a transaction gets before it dials, so these tests only count them.
    use super::*;

    fn transport(limit: usize) -> Transport {
        Transport::new(TransportSettings {
            connections_per_account: limit,
            timeouts: Timeouts::default(),
            trust: TlsTrust::system(None).expect("system roots"),
            helo_name: "localhost".into(),
            deny_private_destinations: false,
        })
    }

    fn envelope() -> Arc<Envelope> {
        Arc::new(Envelope {
            from: "a@example.com".into(),
            rcpts: vec!["b@example.com".into()],
            size: 10,
        })
    }

    /// Whether `f` is still waiting (nothing can wake it in these tests unless a place frees).
    async fn waits<F: std::future::Future + Unpin>(f: &mut F) -> bool {
        tokio::time::timeout(Duration::from_millis(20), f)
            .await
            .is_err()
    }

    /// The place of a first connection to `key`.
    async fn first_place(t: &Transport, key: &str, e: &Arc<Envelope>) -> Slot {
        match t.acquire(key, e).await {
            Some(Grant::Open(slot)) => slot,
            _ => panic!("room for a first connection"),
        }
    }

    fn open_count(t: &Transport, key: &str) -> Option<usize> {
        t.lanes.lock().unwrap().get(key).map(|l| l.open)
    }

    #[tokio::test]
    async fn beyond_the_limit_a_transaction_waits_for_a_place_and_gets_it_when_one_frees() {
        let t = transport(2);
        let e = envelope();
        let first = first_place(&t, "k", &e).await;
        let Some(Grant::Open(second)) = t.acquire("k", &e).await else {
            panic!("room for a second connection")
        };
        assert_eq!(open_count(&t, "k"), Some(2));
        let mut third = Box::pin(t.acquire("k", &e));
        assert!(waits(&mut third).await, "a third waits");
        drop(first);
        let Some(Grant::Open(passed)) = third.await else {
            panic!("the freed place goes to the one waiting")
        };
        assert_eq!(open_count(&t, "k"), Some(2), "passed on, not counted again");
        drop(second);
        assert_eq!(open_count(&t, "k"), Some(1));
        drop(passed);
        assert_eq!(
            open_count(&t, "k"),
            None,
            "the lane goes with its last connection"
        );
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_is_skipped() {
        let t = transport(1);
        let e = envelope();
        let only = first_place(&t, "k", &e).await;
        let mut gone = Box::pin(t.acquire("k", &e));
        assert!(waits(&mut gone).await);
        let mut next = Box::pin(t.acquire("k", &e));
        assert!(waits(&mut next).await);
        drop(gone);
        drop(only);
        assert!(matches!(next.await, Some(Grant::Open(_))));
        // `next`'s grant dropped with it: nothing is open.
        assert_eq!(open_count(&t, "k"), None);
    }

    #[tokio::test]
    async fn clearing_the_transport_ends_the_wait() {
        let t = transport(1);
        let e = envelope();
        let only = first_place(&t, "k", &e).await;
        let mut waiting = Box::pin(t.acquire("k", &e));
        assert!(waits(&mut waiting).await);
        t.clear();
        assert!(waiting.await.is_none(), "no connection after shutdown");
        drop(only);
        assert_eq!(open_count(&t, "k"), None);
    }

    #[tokio::test]
    async fn accounts_do_not_share_places() {
        let t = transport(1);
        let e = envelope();
        let a = t.acquire("a", &e).await;
        let b = t.acquire("b", &e).await;
        assert!(matches!(a, Some(Grant::Open(_))));
        assert!(matches!(b, Some(Grant::Open(_))));
    }
}
