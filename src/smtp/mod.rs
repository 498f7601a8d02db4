//! The SMTP client side, step by step: resolve, connect, TLS, greeting, EHLO, STARTTLS, AUTH,
//! MAIL FROM, RCPT TO, DATA — each step bounded by a timeout and reported as a domain
//! [`Failure`] so the one classifier (`domain::diagnosis`) can explain it.
//!
//! Reply parsing and the AUTH mechanisms come from `mail-send`/`smtp-proto`; this module owns
//! the connection (so STARTTLS can swap the stream under the recorder) and the transcript.

pub mod transcript;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use mail_send::SmtpClient;
use smtp_proto::{EhloResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::domain::diagnosis::{Failure, SmtpReply, Stage};
use crate::tls::{CertificateInfo, Connector, TlsTrust, Verification};
use transcript::{Recorded, Transcript};

/// Timeouts for one conversation (RFC 5321 §4.5.3.2 suggests minutes; a person pressing
/// *Test* should not wait that long, so the defaults are shorter and configurable).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub reply: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            reply: Duration::from_secs(30),
        }
    }
}

/// A TCP or TLS stream; `Upgrading` only while STARTTLS swaps one for the other.
#[derive(Debug)]
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Upgrading,
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Upgrading => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

/// Whether an address is loopback, private, link-local, unique-local or otherwise not a
/// public Internet destination (cloud metadata services live at 169.254.169.254).
pub fn is_private_destination(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // CGNAT 100.64/10
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_destination(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local fe80::/10
        }
    }
}

/// Resolves `host` (an IP literal resolves to itself). With `deny_private`, addresses that
/// are not public are dropped, and if none is left the destination is refused.
pub async fn resolve(
    host: &str,
    port: u16,
    timeout: Duration,
    deny_private: bool,
) -> Result<Vec<SocketAddr>, Failure> {
    let addrs: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else {
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
            Err(_) => return Err(Failure::DnsError("the DNS lookup timed out".into())),
            Ok(Err(e)) => {
                let text = e.to_string();
                return Err(
                    if text.contains("not known")
                        || text.contains("No address")
                        || text.contains("NXDOMAIN")
                        || text.contains("no addresses")
                    {
                        Failure::DnsNotFound
                    } else if text.contains("Temporary failure") {
                        Failure::DnsError(text)
                    } else {
                        Failure::DnsNotFound
                    },
                );
            }
            Ok(Ok(list)) => list.collect(),
        }
    };
    if addrs.is_empty() {
        return Err(Failure::DnsNotFound);
    }
    if deny_private {
        let allowed: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| !is_private_destination(a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(Failure::DestinationNotAllowed {
                address: addrs[0].ip().to_string(),
            });
        }
        return Ok(allowed);
    }
    Ok(addrs)
}

/// Connects to the first address that answers.
pub async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, Failure> {
    let mut last = Failure::ConnectTimeout;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Failure::ConnectionRefused
            }
            Ok(Err(e)) => {
                last = Failure::ConnectionLost {
                    stage: Stage::Connect,
                    error: e.to_string(),
                }
            }
            Err(_) => last = Failure::ConnectTimeout,
        }
    }
    Err(last)
}

/// The TLS name for a host: a DNS name, or an IP address.
fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, Failure> {
    rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| Failure::TlsError(format!("`{host}` is not a valid TLS server name")))
}

/// The outcome of a TLS handshake, for the `tls` stage's detail.
#[derive(Debug, Clone)]
pub struct TlsDetails {
    pub version: String,
    pub cipher: String,
    pub certificate: Option<CertificateInfo>,
}

impl TlsDetails {
    pub fn summary(&self) -> String {
        let mut s = format!("{} {}", self.version, self.cipher);
        if let Some(c) = &self.certificate {
            s.push_str(&format!(
                ", certificate {} issued by {}, valid until {}, SHA-256 {}",
                c.subject, c.issuer, c.not_after, c.sha256
            ));
        }
        s
    }
}

/// Runs a TLS handshake over `tcp`.
pub async fn handshake(
    tcp: TcpStream,
    host: &str,
    trust: &TlsTrust,
    verification: Verification,
    timeout: Duration,
) -> Result<(TlsStream<TcpStream>, TlsDetails), (Failure, Option<CertificateInfo>)> {
    let connector = Connector::new(trust, verification);
    let name = server_name(host).map_err(|f| (f, None))?;
    let result = tokio::time::timeout(timeout, connector.connector.connect(name, tcp)).await;
    match result {
        Err(_) => Err((Failure::ReplyTimeout(Stage::Tls), connector.certificate())),
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            let details = TlsDetails {
                version: conn
                    .protocol_version()
                    .map(|v| format!("{v:?}").replace("TLSv1_", "TLSv1."))
                    .unwrap_or_default(),
                cipher: conn
                    .negotiated_cipher_suite()
                    .map(|c| format!("{:?}", c.suite()))
                    .unwrap_or_default(),
                certificate: connector.certificate(),
            };
            Ok((stream, details))
        }
        Ok(Err(e)) => {
            let cert = connector.certificate();
            if let Some(problem) = connector.problem() {
                return Err((Failure::Certificate(problem), cert));
            }
            let text = e.to_string();
            // Plain text where a TLS record was expected: the server spoke SMTP in clear.
            if text.contains("InvalidContentType")
                || text.contains("corrupt message")
                || text.contains("InvalidMessage")
            {
                return Err((Failure::PlainTextWhereTlsExpected, cert));
            }
            Err((Failure::TlsError(text), cert))
        }
    }
}

/// An SMTP conversation over a recorded connection.
pub struct Session {
    pub client: SmtpClient<Recorded<Conn>>,
    pub host: String,
    pub reply_timeout: Duration,
    /// Server bytes read past the replies asked for: with commands pipelined behind a message
    /// body, one read often brings the body's reply and the next transaction's together.
    unread: Vec<u8>,
}

/// A reply as the diagnosis classifier takes it.
pub(crate) fn to_reply(r: &Response<String>) -> SmtpReply {
    let e = r.esc;
    SmtpReply::new(
        r.code,
        (e[0] != 0).then(|| (e[0], u16::from(e[1]), u16::from(e[2]))),
        r.message.clone(),
    )
}

impl Session {
    pub fn new(conn: Conn, host: &str, reply_timeout: Duration) -> Session {
        Session {
            client: SmtpClient {
                stream: Recorded::new(conn),
                timeout: reply_timeout,
            },
            host: host.to_string(),
            reply_timeout,
            unread: Vec::new(),
        }
    }

    /// Whether the server sent bytes no command has asked for yet.
    pub fn has_unread(&self) -> bool {
        !self.unread.is_empty()
    }

    /// Reads `n` replies, keeping any bytes after the last for the next read. Every reply of
    /// a mail transaction goes through here (mail-send's own reads drop what follows the
    /// replies they parse).
    pub async fn read_replies(
        &mut self,
        n: usize,
    ) -> Result<Vec<Response<String>>, mail_send::Error> {
        use tokio::io::AsyncReadExt;
        let mut replies = Vec::with_capacity(n);
        let mut parser = smtp_proto::response::parser::ResponseReceiver::default();
        let mut buf = std::mem::take(&mut self.unread);
        let read = async {
            loop {
                if !buf.is_empty() {
                    let mut bytes = buf.iter();
                    loop {
                        if replies.len() == n {
                            break;
                        }
                        match parser.parse(&mut bytes) {
                            Ok(reply) => {
                                replies.push(reply);
                                parser.reset();
                            }
                            Err(smtp_proto::Error::NeedsMoreData { .. }) => break,
                            Err(_) => return Err(mail_send::Error::UnparseableReply),
                        }
                    }
                    let rest = bytes.as_slice().len();
                    buf.drain(..buf.len() - rest);
                }
                if replies.len() == n {
                    return Ok(());
                }
                // Straight into the buffer's spare room: no zeroed chunk to copy from, and no
                // 4 KB array held in this future across the await.
                buf.reserve(4096);
                if self.client.stream.read_buf(&mut buf).await? == 0 {
                    return Err(mail_send::Error::UnparseableReply);
                }
            }
        };
        match tokio::time::timeout(self.reply_timeout, read).await {
            Err(_) => Err(mail_send::Error::Timeout),
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => {
                self.unread = buf;
                Ok(replies)
            }
        }
    }

    /// Writes `commands` in one write, bounded by the reply timeout (a server that stops
    /// reading must not hold the connection, and its account's place, for good).
    pub async fn write_commands<S: AsRef<[u8]>>(
        &mut self,
        commands: &[S],
    ) -> Result<(), mail_send::Error> {
        let written = tokio::time::timeout(self.reply_timeout, async {
            self.queue_commands(commands).await?;
            self.flush().await
        })
        .await;
        match written {
            Err(_) => Err(mail_send::Error::Timeout),
            Ok(r) => Ok(r?),
        }
    }

    /// Gathers commands to go out with the next flush (they are recorded at once).
    async fn queue_commands<S: AsRef<[u8]>>(&mut self, commands: &[S]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        for c in commands {
            self.client.stream.write_all(c.as_ref()).await?;
        }
        Ok(())
    }

    /// Gathers the message body and its final dot to go out with the next flush.
    async fn queue_body(&mut self, message: &[u8]) -> std::io::Result<()> {
        write_dot_stuffed(&mut self.client.stream, message).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.client.stream.flush().await
    }

    /// One command and its reply, through [`Session::read_replies`].
    pub async fn exchange(&mut self, line: &str) -> Result<Response<String>, mail_send::Error> {
        self.write_commands(&[line]).await?;
        let mut replies = self.read_replies(1).await?;
        Ok(replies.remove(0))
    }

    pub fn transcript(&self) -> Arc<Mutex<Transcript>> {
        self.client.stream.transcript.clone()
    }

    fn failure(&self, stage: Stage, error: mail_send::Error) -> Failure {
        match error {
            mail_send::Error::UnexpectedReply(r) | mail_send::Error::AuthenticationFailed(r) => {
                Failure::Reply {
                    stage,
                    reply: to_reply(&r),
                }
            }
            mail_send::Error::Timeout => {
                if stage == Stage::Greeting {
                    Failure::GreetingTimeout {
                        implicit_tls: false,
                    }
                } else {
                    Failure::ReplyTimeout(stage)
                }
            }
            mail_send::Error::UnparseableReply => {
                let t = self.client.stream.transcript.lock().expect("not poisoned");
                let raw = match t.pending_server_text() {
                    s if !s.is_empty() => s,
                    _ => t.last_reply(),
                };
                if raw.is_empty() {
                    Failure::ConnectionLost {
                        stage,
                        error: "the server closed the connection".into(),
                    }
                } else {
                    Failure::Unparseable { stage, raw }
                }
            }
            mail_send::Error::UnsupportedAuthMechanism => Failure::AuthNotOffered {
                offered: Vec::new(),
            },
            mail_send::Error::Io(e) => Failure::ConnectionLost {
                stage,
                error: e.to_string(),
            },
            other => Failure::ConnectionLost {
                stage,
                error: other.to_string(),
            },
        }
    }

    /// Reads the greeting (RFC 5321 §4.3.1: 220, or 554 / 421 to refuse).
    pub async fn greeting(&mut self) -> Result<SmtpReply, Failure> {
        let reply = match tokio::time::timeout(self.reply_timeout, self.client.read()).await {
            Err(_) => {
                return Err(Failure::GreetingTimeout {
                    implicit_tls: false,
                });
            }
            Ok(r) => r.map_err(|e| self.failure(Stage::Greeting, e))?,
        };
        let reply = to_reply(&reply);
        if reply.code != 220 {
            return Err(Failure::Reply {
                stage: Stage::Greeting,
                reply,
            });
        }
        Ok(reply)
    }

    /// EHLO; returns the capabilities and the capability lines as the server wrote them.
    pub async fn ehlo(
        &mut self,
        name: &str,
    ) -> Result<(EhloResponse<String>, Vec<String>), Failure> {
        let response = self.client.ehlo(name).await.map_err(|e| match e {
            mail_send::Error::UnexpectedReply(r) => Failure::Reply {
                stage: Stage::Ehlo,
                reply: to_reply(&r),
            },
            other => self.failure(Stage::Ehlo, other),
        })?;
        let lines = self
            .client
            .stream
            .transcript
            .lock()
            .expect("not poisoned")
            .last_reply()
            .lines()
            .skip(1)
            .map(|l| l.get(4..).unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        Ok((response, lines))
    }

    /// STARTTLS (RFC 3207) and the handshake; the recorder keeps recording over TLS.
    pub async fn starttls(
        &mut self,
        trust: &TlsTrust,
        verification: Verification,
    ) -> Result<TlsDetails, (Failure, Option<CertificateInfo>)> {
        let reply = self
            .client
            .cmd(b"STARTTLS\r\n")
            .await
            .map_err(|e| (self.failure(Stage::Starttls, e), None))?;
        if reply.code != 220 {
            return Err((
                Failure::Reply {
                    stage: Stage::Starttls,
                    reply: to_reply(&reply),
                },
                None,
            ));
        }
        let Conn::Plain(tcp) = std::mem::replace(&mut self.client.stream.inner, Conn::Upgrading)
        else {
            return Err((
                Failure::TlsError("STARTTLS on a connection that is already encrypted".into()),
                None,
            ));
        };
        let (tls, details) =
            handshake(tcp, &self.host, trust, verification, self.reply_timeout).await?;
        self.client.stream.inner = Conn::Tls(Box::new(tls));
        self.client
            .stream
            .transcript
            .lock()
            .expect("not poisoned")
            .note(&format!(
                "TLS established: {} {}",
                details.version, details.cipher
            ));
        Ok(details)
    }

    /// AUTH with the mechanisms cartero speaks (PLAIN, LOGIN; LOGIN only when `login_only`,
    /// as Microsoft 365 prefers). Returns the mechanism names the server offered.
    pub async fn authenticate(
        &mut self,
        capabilities: &EhloResponse<String>,
        offered_lines: &[String],
        username: &str,
        password: &str,
        login_only: bool,
    ) -> Result<(), Failure> {
        let offered: Vec<String> = offered_lines
            .iter()
            .filter_map(|l| {
                let upper = l.to_ascii_uppercase();
                upper
                    .strip_prefix("AUTH ")
                    .or_else(|| upper.strip_prefix("AUTH="))
                    .map(|m| m.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            })
            .flatten()
            .collect();
        let usable = if login_only {
            smtp_proto::AUTH_LOGIN
        } else {
            smtp_proto::AUTH_PLAIN | smtp_proto::AUTH_LOGIN
        };
        let mut caps = capabilities.clone();
        caps.auth_mechanisms &= usable;
        if caps.auth_mechanisms == 0 {
            return Err(Failure::AuthNotOffered { offered });
        }
        let credentials = mail_send::Credentials::new(username.to_string(), password.to_string());
        self.client
            .authenticate(&credentials, &caps)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                mail_send::Error::UnsupportedAuthMechanism => Failure::AuthNotOffered {
                    offered: offered.clone(),
                },
                other => self.failure(Stage::Auth, other),
            })
    }

    async fn command(&mut self, stage: Stage, line: String, ok: u16) -> Result<SmtpReply, Failure> {
        let reply = self
            .client
            .cmd(line.as_bytes())
            .await
            .map_err(|e| self.failure(stage, e))?;
        let reply = to_reply(&reply);
        if reply.code != ok && !(stage != Stage::Data && (200..300).contains(&reply.code)) {
            return Err(Failure::Reply { stage, reply });
        }
        Ok(reply)
    }

    pub async fn mail_from(
        &mut self,
        address: &str,
        size: Option<usize>,
    ) -> Result<SmtpReply, Failure> {
        let size = size.map(|s| format!(" SIZE={s}")).unwrap_or_default();
        self.command(
            Stage::MailFrom,
            format!("MAIL FROM:<{address}>{size}\r\n"),
            250,
        )
        .await
    }

    pub async fn rcpt_to(&mut self, address: &str) -> Result<SmtpReply, Failure> {
        self.command(Stage::RcptTo, format!("RCPT TO:<{address}>\r\n"), 250)
            .await
    }

    /// DATA, the message (dot-stuffed), and the final reply.
    pub async fn data(&mut self, message: &[u8]) -> Result<SmtpReply, Failure> {
        let go = self
            .exchange("DATA\r\n")
            .await
            .map_err(|e| self.failure(Stage::Data, e))?;
        let go = to_reply(&go);
        if go.code != 354 {
            return Err(Failure::Reply {
                stage: Stage::Data,
                reply: go,
            });
        }
        self.body(message, None).await
    }

    /// The message once DATA was answered 354: the body, its final dot, and the server's reply
    /// to them. When `behind` is given, the next transaction's commands go right after the dot
    /// in the same write (RFC 2920 §3.1 lets a message's content begin a pipelined group), and
    /// the transcript gives the replies still due to this transaction to
    /// [`Transcript::take_previous`].
    pub async fn body(
        &mut self,
        message: &[u8],
        behind: Option<&[String]>,
    ) -> Result<SmtpReply, Failure> {
        let written = tokio::time::timeout(self.reply_timeout, async {
            self.queue_body(message).await?;
            if let Some(commands) = behind {
                {
                    let transcript = self.transcript();
                    let mut t = transcript.lock().expect("not poisoned");
                    t.split();
                    t.note("sent behind the previous message's data (RFC 2920 pipelining)");
                }
                self.queue_commands(commands).await?;
            }
            self.flush().await
        })
        .await;
        match written {
            Err(_) => return Err(self.failure(Stage::Data, mail_send::Error::Timeout)),
            Ok(Err(e)) => return Err(self.failure(Stage::Data, e.into())),
            Ok(Ok(())) => {}
        }
        let reply = match self.read_replies(1).await {
            Err(e) => return Err(self.failure(Stage::Data, e)),
            Ok(mut r) => to_reply(&r.remove(0)),
        };
        if !(200..300).contains(&reply.code) {
            return Err(Failure::Reply {
                stage: Stage::Data,
                reply,
            });
        }
        Ok(reply)
    }

    /// Ends a data phase that a pipelined DATA opened when there is nothing to send (the
    /// sender or every recipient was refused, yet the server answered 354): an empty body.
    /// Says whether the server answered (if not, the connection is not to be reused).
    pub async fn abandon_data(&mut self) -> bool {
        self.exchange(".\r\n").await.is_ok()
    }

    /// Says whether the server answered 250 (if not, the connection is not to be reused).
    pub async fn rset(&mut self) -> bool {
        self.exchange("RSET\r\n")
            .await
            .is_ok_and(|r| (200..300).contains(&r.code))
    }

    /// QUIT, politely, without caring about the answer.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.cmd(b"QUIT\r\n")).await;
    }
}

/// Writes `message` as the content of DATA and ends it, without flushing: a "." that begins the
/// message or follows CR or LF is doubled (the transparency of RFC 5321 §4.5.2), then the end
/// of data. It finds the dots that begin a line with memmem, two bytes at a time, instead of
/// testing every byte or stopping at every full stop of the text. (mail-send's
/// `write_message` does not double a dot at the very start, so a raw message beginning with
/// ".\r\n" would end the data there and have the rest read as commands.)
///
/// The end of data is CRLF "." CRLF, whose first CRLF ends the message's last line (RFC 5321
/// §4.1.1.4): a message that already ends with CRLF is followed by "." CRLF only. Sending the
/// whole sequence after it, as mail-send does, gave every such message one empty line more
/// than it had.
pub async fn write_dot_stuffed<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    message: &[u8],
) -> std::io::Result<()> {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    use tokio::io::AsyncWriteExt;
    static AFTER_LF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n."));
    static AFTER_CR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r."));
    // Where the dots to double are: after LF, after CR (one byte precedes each, so no dot is
    // found twice), and at the very start.
    let mut dots: Vec<usize> = AFTER_LF
        .find_iter(message)
        .chain(AFTER_CR.find_iter(message))
        .map(|i| i + 1)
        .collect();
    if message.first() == Some(&b'.') {
        dots.push(0);
    }
    dots.sort_unstable();
    let mut start = 0;
    for dot in dots {
        // Up to and with this dot; the next piece starts with it again.
        w.write_all(&message[start..=dot]).await?;
        start = dot;
    }
    w.write_all(&message[start..]).await?;
    if message.ends_with(b"\r\n") {
        w.write_all(b".\r\n").await
    } else {
        w.write_all(b"\r\n.\r\n").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn stuffed(message: &[u8]) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let (mut ours, mut read_ours) = tokio::io::duplex(1 << 16);
        write_dot_stuffed(&mut ours, message).await.unwrap();
        drop(ours);
        let mut got = Vec::new();
        read_ours.read_to_end(&mut got).await.unwrap();
        got
    }

    /// A dot at the very start of the message is doubled too: otherwise a raw message that
    /// begins with ".\r\n" ends the data at once and its rest is read as SMTP commands.
    #[tokio::test]
    async fn a_leading_dot_is_stuffed() {
        assert_eq!(
            stuffed(b".\r\nRSET\r\nMAIL FROM:<x@evil.example>\r\n").await,
            b"..\r\nRSET\r\nMAIL FROM:<x@evil.example>\r\n.\r\n"
        );
        assert_eq!(stuffed(b".a").await, b"..a\r\n.\r\n");
    }

    /// Every dot at the start or after CR or LF is doubled and no other, in strings of dots,
    /// line ends and letters of every length up to 12 (a byte-by-byte rule as the reference).
    #[tokio::test]
    async fn dot_stuffing_doubles_exactly_the_dots_that_begin_a_line() {
        let alphabet = [b'.', b'\r', b'\n', b'a'];
        for len in 0..=12u32 {
            // Every string of `len` letters up to 7 (the base-4 digits of k), a spread of
            // 16,384 of them for longer ones.
            let count = 4u64.pow(len.min(7));
            for k in 0..count {
                let mut digits = if len <= 7 {
                    k
                } else {
                    k.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                };
                let case: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[(digits % 4) as usize];
                        digits /= 4;
                        b
                    })
                    .collect();
                let mut want = Vec::new();
                for (i, &b) in case.iter().enumerate() {
                    if b == b'.' && (i == 0 || matches!(case[i - 1], b'\r' | b'\n')) {
                        want.push(b'.');
                    }
                    want.push(b);
                }
                want.extend_from_slice(if case.ends_with(b"\r\n") {
                    b".\r\n"
                } else {
                    b"\r\n.\r\n"
                });
                assert_eq!(
                    stuffed(&case).await,
                    want,
                    "{:?}",
                    String::from_utf8_lossy(&case)
                );
            }
        }
    }

    /// The end of data finishes the last line instead of adding an empty one after it.
    #[tokio::test]
    async fn the_end_of_data_adds_no_empty_line() {
        assert_eq!(
            stuffed(b"Subject: x\r\n\r\nbody\r\n").await,
            b"Subject: x\r\n\r\nbody\r\n.\r\n"
        );
        assert_eq!(
            stuffed(b"Subject: x\r\n\r\nbody").await,
            b"Subject: x\r\n\r\nbody\r\n.\r\n"
        );
        // A message whose last line is empty keeps it.
        assert_eq!(stuffed(b"a\r\n\r\n").await, b"a\r\n\r\n.\r\n");
        // A last line of one dot is doubled and still ended.
        assert_eq!(stuffed(b"a\r\n.\r\n").await, b"a\r\n..\r\n.\r\n");
    }

    /// Beyond the first byte, the same transparency as mail-send's own procedure (the content
    /// before the end of data; mail-send always appends CRLF "." CRLF).
    #[tokio::test]
    async fn dot_stuffing_matches_mail_send() {
        use tokio::io::AsyncReadExt;
        let cases: [&[u8]; 8] = [
            b"",
            b"no dots at all\r\n",
            b"Full stops. In the text.\r\n.but one begins a line. And\r\n..another.\r\n",
            b"x\r.\n.\r\n.",
            b"a\r\n.b\r\n..c\r\n",
            b"lf only\n.d\n",
            b"cr only\r.e",
            b"end with a line of one dot\r\n.",
        ];
        for case in cases {
            let got = stuffed(case).await;

            let (theirs, mut read_theirs) = tokio::io::duplex(1 << 16);
            let mut client = mail_send::SmtpClient {
                stream: theirs,
                timeout: Duration::from_secs(5),
            };
            client.write_message(case).await.unwrap();
            drop(client);
            let mut want = Vec::new();
            read_theirs.read_to_end(&mut want).await.unwrap();
            let want = want.strip_suffix(b"\r\n.\r\n").unwrap();
            let got = if case.ends_with(b"\r\n") {
                got.strip_suffix(b".\r\n").unwrap()
            } else {
                got.strip_suffix(b"\r\n.\r\n").unwrap()
            };
            assert_eq!(
                String::from_utf8_lossy(got),
                String::from_utf8_lossy(want),
                "case {:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn private_destinations() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(
                is_private_destination(private.parse().unwrap()),
                "{private}"
            );
        }
        for public in ["8.8.8.8", "2a00:1450:4001::1", "172.32.0.1"] {
            assert!(!is_private_destination(public.parse().unwrap()), "{public}");
        }
    }
}
