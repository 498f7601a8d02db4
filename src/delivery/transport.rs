//! The SMTP transport of delivery: a pool of authenticated connections per account, and one
//! mail transaction (RFC 5321 §3.3) per message — MAIL FROM and every RCPT TO pipelined when
//! the server offers PIPELINING (RFC 2920), then DATA.
//!
//! A connection is reused while it is healthy and younger than the idle limit; any I/O error,
//! timeout or unexpected reply drops it. Pool keys include the account's `updated_at`, so a
//! changed password or host never uses an old connection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use smtp_proto::EhloResponse;

use crate::domain::account::{AccountSpec, AuthMethod, Security};
use crate::domain::diagnosis::{Failure, SmtpReply, Stage};
use crate::secrets::Secret;
use crate::smtp::{self, Conn, Session, Timeouts};
use crate::tls::{TlsTrust, Verification};

/// How long an idle connection may wait in the pool.
const IDLE_LIMIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// Idle connections kept per account: as many as an account may use at once, so that a
    /// busy account does not close and reopen connections.
    pub max_idle_per_account: usize,
    pub timeouts: Timeouts,
    pub trust: TlsTrust,
    pub helo_name: String,
    pub deny_private_destinations: bool,
}

struct Idle {
    session: Session,
    caps: EhloResponse<String>,
    since: Instant,
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

pub struct Transport {
    settings: TransportSettings,
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

impl Transport {
    pub fn new(settings: TransportSettings) -> Transport {
        Transport {
            settings,
            idle: Mutex::new(HashMap::new()),
        }
    }

    fn take_idle(&self, key: &str) -> Option<Idle> {
        let mut idle = self.idle.lock().expect("not poisoned");
        let list = idle.get_mut(key)?;
        while let Some(i) = list.pop() {
            if i.since.elapsed() < IDLE_LIMIT {
                return Some(i);
            }
        }
        None
    }

    fn put_idle(&self, key: &str, session: Session, caps: EhloResponse<String>) {
        let mut idle = self.idle.lock().expect("not poisoned");
        let list = idle.entry(key.to_string()).or_default();
        list.retain(|i| i.since.elapsed() < IDLE_LIMIT);
        if list.len() < self.settings.max_idle_per_account.max(1) {
            list.push(Idle {
                session,
                caps,
                since: Instant::now(),
            });
        }
    }

    /// Drops every pooled connection (at shutdown).
    pub fn clear(&self) {
        self.idle.lock().expect("not poisoned").clear();
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
    /// connection when one is idle, else on a new one.
    pub async fn send(
        &self,
        target: &Target<'_>,
        envelope_from: &str,
        rcpts: &[String],
        message: &[u8],
    ) -> TxReport {
        if let Some(idle) = self.take_idle(&target.key) {
            let (report, stale) = self
                .run_on(
                    target,
                    idle.session,
                    idle.caps,
                    envelope_from,
                    rcpts,
                    message,
                )
                .await;
            if !stale {
                return report;
            }
            // The server had closed the pooled connection before answering anything: try
            // once on a fresh one, keeping what the dead one showed.
            let mut fresh = self.send_fresh(target, envelope_from, rcpts, message).await;
            let mut transcript = report.transcript;
            transcript.append(&mut fresh.transcript);
            fresh.transcript = transcript;
            return fresh;
        }
        self.send_fresh(target, envelope_from, rcpts, message).await
    }

    async fn send_fresh(
        &self,
        target: &Target<'_>,
        envelope_from: &str,
        rcpts: &[String],
        message: &[u8],
    ) -> TxReport {
        match self.open(target).await {
            Err((failure, lines)) => TxReport {
                rcpts: vec![None; rcpts.len()],
                failure: Some(failure),
                transcript: lines,
                ..TxReport::default()
            },
            Ok((session, caps)) => {
                self.run_on(target, session, caps, envelope_from, rcpts, message)
                    .await
                    .0
            }
        }
    }

    /// Runs the transaction on `session`, returns it to the pool if it stays usable, and
    /// says whether the connection was found dead before any reply (a stale pooled one).
    async fn run_on(
        &self,
        target: &Target<'_>,
        mut session: Session,
        caps: EhloResponse<String>,
        envelope_from: &str,
        rcpts: &[String],
        message: &[u8],
    ) -> (TxReport, bool) {
        let mut report = TxReport {
            rcpts: vec![None; rcpts.len()],
            ..TxReport::default()
        };
        let outcome = transaction(
            &mut session,
            &caps,
            envelope_from,
            rcpts,
            message,
            &mut report,
        )
        .await;
        report.transcript.splice(
            0..0,
            session
                .transcript()
                .lock()
                .expect("not poisoned")
                .drain_lines(),
        );
        let untouched = report.data.is_none() && report.rcpts.iter().all(Option::is_none);
        match outcome {
            Ok(()) => {
                self.put_idle(&target.key, session, caps);
                (report, false)
            }
            Err(f) => {
                let stale = untouched
                    && matches!(f, Failure::ConnectionLost { .. } | Failure::ReplyTimeout(_));
                report.failure = Some(f);
                session.quit().await;
                (report, stale)
            }
        }
    }
}

/// MAIL, RCPT…, DATA on an open session. `Err` means the session must not be reused.
async fn transaction(
    session: &mut Session,
    caps: &EhloResponse<String>,
    envelope_from: &str,
    rcpts: &[String],
    message: &[u8],
    report: &mut TxReport,
) -> Result<(), Failure> {
    if caps.size > 0 && message.len() > caps.size {
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
        return Ok(());
    }
    let size = if caps.size > 0 {
        format!(" SIZE={}", message.len())
    } else {
        String::new()
    };
    let pipelining = caps.capabilities & smtp_proto::EXT_PIPELINING != 0;
    let mut commands = vec![format!("MAIL FROM:<{envelope_from}>{size}\r\n")];
    commands.extend(rcpts.iter().map(|r| format!("RCPT TO:<{r}>\r\n")));
    if pipelining {
        // DATA may end the pipelined group (RFC 2920 §3.1): one round trip fewer.
        commands.push("DATA\r\n".to_string());
    }
    let lost = |stage: Stage, e: mail_send::Error| match e {
        mail_send::Error::Timeout => Failure::ReplyTimeout(stage),
        other => Failure::ConnectionLost {
            stage,
            error: other.to_string(),
        },
    };
    let mut replies: Vec<SmtpReply> = if pipelining {
        session
            .client
            .cmds(commands.iter().map(String::as_bytes))
            .await
            .map_err(|e| lost(Stage::MailFrom, e))?
            .iter()
            .map(smtp::to_reply)
            .collect()
    } else {
        let mut out = Vec::with_capacity(commands.len());
        for (i, c) in commands.iter().enumerate() {
            let r = session.client.cmd(c.as_bytes()).await.map_err(|e| {
                lost(
                    if i == 0 {
                        Stage::MailFrom
                    } else {
                        Stage::RcptTo
                    },
                    e,
                )
            })?;
            let r = smtp::to_reply(&r);
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
        end_transaction(session, data_open).await;
        return Ok(());
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
        end_transaction(session, data_open).await;
        return Ok(());
    }
    let sent = match data_go {
        None => session.data(message).await,
        Some(_) if data_open => session.body(message).await,
        Some(reply) => Err(Failure::Reply {
            stage: Stage::Data,
            reply,
        }),
    };
    match sent {
        Ok(reply) => {
            report.data = Some(reply);
            Ok(())
        }
        Err(Failure::Reply { stage, reply }) => {
            report.data = Some(reply.clone());
            report.failure = Some(Failure::Reply { stage, reply });
            // After a refused DATA the connection stays usable; RSET makes sure the server
            // holds no half-open transaction for the next message.
            session.rset().await;
            Ok(())
        }
        Err(f) => Err(f),
    }
}

/// Ends a transaction that sends no message: the data phase a pipelined DATA opened, if the
/// server answered it 354, then RSET.
async fn end_transaction(session: &mut Session, data_open: bool) {
    if data_open {
        session.abandon_data().await;
    }
    session.rset().await;
}
