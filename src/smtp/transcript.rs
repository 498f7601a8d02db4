//! A stream wrapper that writes down an SMTP conversation as it happens — `S:` lines the
//! server sent, `C:` lines cartero sent — with credentials replaced by `****` before they are
//! ever stored: the AUTH exchange (RFC 4954 §4) is masked line by line, and a message body
//! (after `354`) is reduced to its size.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The lines of one conversation, shareable with the code that drives it.
#[derive(Debug, Default)]
pub struct Transcript {
    lines: Vec<String>,
    client_partial: Vec<u8>,
    server_partial: Vec<u8>,
    in_auth: bool,
    /// Commands written whose replies have not arrived yet (pipelining, RFC 2920).
    pending_replies: usize,
    /// After DATA was written: how many replies still come before the one that answers it.
    data_reply_after: Option<usize>,
    in_data: bool,
    data_bytes: usize,
    /// The lines of the last complete server reply (for diagnosing unparseable answers).
    last_reply: Vec<String>,
    reply_in_progress: Vec<String>,
    /// A transaction whose last replies are still due while the next one's commands already
    /// went out behind its body (pipelining across messages): its lines, and how many of the
    /// coming replies are its own.
    previous: Option<(Vec<String>, usize)>,
}

/// Longest line kept in the transcript; longer ones are cut (a hostile server cannot flood it).
const MAX_LINE: usize = 1000;
/// Most lines kept.
const MAX_LINES: usize = 500;

impl Transcript {
    pub fn lines(&self) -> Vec<String> {
        self.lines.clone()
    }

    /// Takes the lines written so far (a pooled connection's transcript, one transaction at
    /// a time).
    pub fn drain_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }

    pub fn last_reply(&self) -> String {
        if !self.reply_in_progress.is_empty() {
            return self.reply_in_progress.join("\n");
        }
        self.last_reply.join("\n")
    }

    /// Server bytes that did not end in a line break yet (what a silent-then-garbage server sent).
    pub fn pending_server_text(&self) -> String {
        String::from_utf8_lossy(&self.server_partial).into_owned()
    }

    /// Ends this transaction's lines where the next one's commands are about to be written,
    /// though replies to it are still due: those replies go to the lines
    /// [`Transcript::take_previous`] returns, the rest to the next transaction's.
    pub fn split(&mut self) {
        self.previous = Some((std::mem::take(&mut self.lines), self.pending_replies));
    }

    /// The lines of the transaction [`Transcript::split`] ended, if it was split.
    pub fn take_previous(&mut self) -> Option<Vec<String>> {
        self.previous.take().map(|(lines, _)| lines)
    }

    /// Adds a note of cartero's own (`*: STARTTLS handshake …`).
    pub fn note(&mut self, text: &str) {
        self.push(format!("*: {text}"));
    }

    fn push(&mut self, line: String) {
        push_line(&mut self.lines, line);
    }

    fn client_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.in_data {
                let used = self.data_chunk(bytes);
                bytes = &bytes[used..];
                continue;
            }
            if let Some(line) = next_line(&mut self.client_partial, &mut bytes) {
                self.client_line(line);
            }
        }
    }

    /// Counts message-body bytes without keeping them, up to and including the end of data
    /// (CRLF "." CRLF, RFC 5321 §4.1.1.4), which may be split across writes. Returns how many
    /// of `bytes` belong to the body; `client_partial` carries the last few bytes of a write.
    fn data_chunk(&mut self, bytes: &[u8]) -> usize {
        const END: &[u8] = b"\r\n.\r\n";
        let at_start = self.data_bytes == 0 && self.client_partial.is_empty();
        let end = if at_start && bytes.starts_with(b".\r\n") {
            // An empty body: the end of data right after the 354.
            Some(3)
        } else {
            // The end may straddle the previous write (at most END.len() - 1 bytes carried).
            let carried = self.client_partial.len();
            let mut edge = std::mem::take(&mut self.client_partial);
            edge.extend_from_slice(&bytes[..bytes.len().min(END.len() - 1)]);
            let found = memchr::memmem::find(&edge, END)
                .map(|i| i + END.len() - carried)
                .or_else(|| memchr::memmem::find(bytes, END).map(|i| i + END.len()));
            if found.is_none() {
                // Keep the last END.len() - 1 bytes seen, for the next write.
                edge.extend_from_slice(&bytes[bytes.len().min(END.len() - 1)..]);
                let keep = edge.len().saturating_sub(END.len() - 1);
                self.client_partial = edge.split_off(keep);
            }
            found
        };
        match end {
            Some(n) => {
                self.data_bytes += n;
                self.push(format!(
                    "C: <message: {} bytes>",
                    self.data_bytes.saturating_sub(3)
                ));
                self.push("C: .".into());
                self.pending_replies += 1;
                self.client_partial.clear();
                self.in_data = false;
                self.data_bytes = 0;
                n
            }
            None => {
                self.data_bytes += bytes.len();
                bytes.len()
            }
        }
    }

    fn client_line(&mut self, line: String) {
        let starts = |prefix: &str| {
            line.len() >= prefix.len()
                && line.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        };
        if starts("AUTH ") {
            self.in_auth = true;
            let mechanism = line.split_whitespace().nth(1).unwrap_or("");
            let initial = line.split_whitespace().count() > 2;
            self.push(if initial {
                format!("C: AUTH {mechanism} ****")
            } else {
                format!("C: AUTH {mechanism}")
            });
        } else if self.in_auth {
            self.push("C: ****".into());
        } else {
            if line.eq_ignore_ascii_case("DATA") {
                self.data_reply_after = Some(self.pending_replies);
            }
            self.push(tagged("C: ", &line));
        }
        self.pending_replies += 1;
    }

    fn server_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if let Some(line) = next_line(&mut self.server_partial, &mut bytes) {
                self.server_line(line);
            }
        }
    }

    fn server_line(&mut self, line: String) {
        let last_of_reply = line.as_bytes().get(3) != Some(&b'-');
        let tagged = tagged("S: ", &line);
        let is_354 = line.starts_with("354");
        let is_334 = line.starts_with("334");
        self.reply_in_progress.push(line);
        if last_of_reply {
            self.last_reply = std::mem::take(&mut self.reply_in_progress);
            if self.in_auth && !is_334 {
                self.in_auth = false;
            }
            self.pending_replies = self.pending_replies.saturating_sub(1);
            match self.data_reply_after {
                // This reply answers DATA: the body follows only after a 354.
                Some(0) => {
                    self.data_reply_after = None;
                    self.in_data = is_354;
                }
                Some(n) => self.data_reply_after = Some(n - 1),
                None => {}
            }
        }
        // A reply still due to the transaction before a split goes to its lines.
        if let Some((lines, due)) = &mut self.previous
            && *due > 0
        {
            if last_of_reply {
                *due -= 1;
            }
            push_line(lines, tagged);
            return;
        }
        self.push(tagged);
    }
}

/// `line` behind its side's tag (`S: `, `C: `), in one allocation.
fn tagged(tag: &str, line: &str) -> String {
    let mut out = String::with_capacity(tag.len() + line.len());
    out.push_str(tag);
    out.push_str(line);
    out
}

/// Keeps `line` (cut at [`MAX_LINE`]) unless `lines` is full.
fn push_line(lines: &mut Vec<String>, mut line: String) {
    if lines.len() >= MAX_LINES {
        return;
    }
    if line.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    lines.push(line);
}

/// Moves `bytes` up to and with the next LF into `partial`; returns the line that ended there
/// (without its CR LF), if one did. The rest of `bytes` is left for the next call.
fn next_line(partial: &mut Vec<u8>, bytes: &mut &[u8]) -> Option<String> {
    let (piece, rest) = match memchr::memchr(b'\n', bytes) {
        Some(i) => bytes.split_at(i + 1),
        None => (*bytes, &[][..]),
    };
    partial.extend_from_slice(piece);
    *bytes = rest;
    if !piece.ends_with(b"\n") {
        return None;
    }
    let line = String::from_utf8_lossy(partial)
        .trim_end_matches(['\r', '\n'])
        .to_string();
    partial.clear();
    Some(line)
}

/// Wraps a stream and records what passes through into a shared [`Transcript`].
///
/// Writes are also gathered until the next flush (SMTP clients flush before they wait for a
/// reply), so that a pipelined group of commands, or a message body and its final dot, leave as
/// one write instead of one system call — and often one TCP segment — each.
pub struct Recorded<S> {
    pub inner: S,
    pub transcript: Arc<Mutex<Transcript>>,
    out: Vec<u8>,
    /// How much of `out` the inner stream has taken.
    written: usize,
}

/// Gathered writes go out once they reach this size; a larger write goes straight through.
const WRITE_BUFFER: usize = 16 * 1024;

impl<S> Recorded<S> {
    pub fn new(inner: S) -> Recorded<S> {
        Recorded {
            inner,
            transcript: Arc::new(Mutex::new(Transcript::default())),
            out: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> Recorded<S> {
    /// Writes out what was gathered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                self.transcript
                    .lock()
                    .expect("not poisoned")
                    .server_bytes(new);
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let n = if this.out.len() + buf.len() <= WRITE_BUFFER {
            this.out.extend_from_slice(buf);
            buf.len()
        } else {
            ready!(this.poll_drain(cx))?;
            if buf.len() < WRITE_BUFFER {
                this.out.extend_from_slice(buf);
                buf.len()
            } else {
                ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?
            }
        };
        this.transcript
            .lock()
            .expect("not poisoned")
            .client_bytes(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_exchange_and_body_are_masked() {
        let mut t = Transcript::default();
        t.server_bytes(b"220 mx ESMTP\r\n");
        t.client_bytes(b"EHLO cartero\r\n");
        t.server_bytes(b"250-mx\r\n250 AUTH PLAIN LOGIN\r\n");
        t.client_bytes(b"AUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n");
        t.server_bytes(b"235 2.7.0 ok\r\n");
        t.client_bytes(b"AUTH LOGIN\r\n");
        t.server_bytes(b"334 VXNlcm5hbWU6\r\n");
        t.client_bytes(b"YWxpY2U=\r\n");
        t.server_bytes(b"334 UGFzc3dvcmQ6\r\n");
        t.client_bytes(b"czNjcmV0\r\n");
        t.server_bytes(b"535 5.7.8 no\r\n");
        t.client_bytes(b"MAIL FROM:<a@b.example>\r\n");
        t.server_bytes(b"250 ok\r\n");
        t.client_bytes(b"DATA\r\n");
        t.server_bytes(b"354 go\r\n");
        t.client_bytes(b"Subject: secret body\r\n\r\nhello\r\n.\r\n");
        t.server_bytes(b"250 queued\r\n");
        let text = t.lines().join("\n");
        assert!(!text.contains("AGFsaWNlAHMzY3JldA=="), "{text}");
        assert!(
            !text.contains("czNjcmV0") && !text.contains("YWxpY2U="),
            "{text}"
        );
        assert!(!text.contains("secret body"), "{text}");
        assert!(text.contains("C: AUTH PLAIN ****"));
        assert!(text.contains("C: <message: 31 bytes>"), "{text}");
        assert!(text.contains("C: MAIL FROM:<a@b.example>"));
        assert_eq!(t.last_reply(), "250 queued");
    }

    /// Commands are words of any case (RFC 5321 §2.4): a lower-case AUTH is masked and a
    /// lower-case DATA's body is reduced to its size all the same.
    #[test]
    fn lower_case_commands_are_masked_too() {
        let mut t = Transcript::default();
        t.client_bytes(b"auth plain AGFsaWNlAHMzY3JldA==\r\n");
        t.server_bytes(b"235 2.7.0 ok\r\n");
        t.client_bytes(b"Auth Login\r\n");
        t.server_bytes(b"334 VXNlcm5hbWU6\r\n");
        t.client_bytes(b"YWxpY2U=\r\n");
        t.server_bytes(b"535 5.7.8 no\r\n");
        t.client_bytes(b"data\r\n");
        t.server_bytes(b"354 go\r\n");
        t.client_bytes(b"Subject: secret body\r\n\r\nhello\r\n.\r\n");
        t.server_bytes(b"250 queued\r\n");
        let text = t.lines().join("\n");
        assert!(!text.contains("AGFsaWNlAHMzY3JldA=="), "{text}");
        assert!(!text.contains("YWxpY2U="), "{text}");
        assert!(!text.contains("secret body"), "{text}");
        assert!(text.contains("C: AUTH plain ****"), "{text}");
        assert!(text.contains("C: <message: 31 bytes>"), "{text}");
    }

    /// The end of data is found wherever the writes split the body, and the size is the same.
    #[test]
    fn body_split_across_writes_is_counted_once() {
        let body: &[u8] = b"Subject: x\r\n\r\nline one\r\n..dot-stuffed\r\n\r\n.\r\n";
        for split in 0..=body.len() {
            for second in split..=body.len() {
                let mut t = Transcript::default();
                t.client_bytes(b"DATA\r\n");
                t.server_bytes(b"354 go\r\n");
                t.client_bytes(&body[..split]);
                t.client_bytes(&body[split..second]);
                t.client_bytes(&body[second..]);
                t.client_bytes(b"QUIT\r\n");
                let lines = t.lines();
                assert_eq!(
                    lines[lines.len() - 3..],
                    [
                        format!("C: <message: {} bytes>", body.len() - 3),
                        "C: .".to_string(),
                        "C: QUIT".to_string()
                    ],
                    "split at {split} and {second}: {lines:?}"
                );
            }
        }
    }

    #[test]
    fn empty_body_ends_at_once() {
        let mut t = Transcript::default();
        t.client_bytes(b"DATA\r\n");
        t.server_bytes(b"354 go\r\n");
        t.client_bytes(b".\r\nQUIT\r\n");
        let lines = t.lines();
        assert_eq!(
            lines[lines.len() - 3..],
            ["C: <message: 0 bytes>", "C: .", "C: QUIT"]
        );
    }

    /// With DATA pipelined behind MAIL and RCPT (RFC 2920), the body begins after the reply
    /// that answers DATA, not after the first reply that arrives.
    #[test]
    fn pipelined_data_waits_for_its_own_reply() {
        let mut t = Transcript::default();
        t.server_bytes(b"220 mx ESMTP\r\n");
        t.client_bytes(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n");
        t.server_bytes(b"250 ok\r\n");
        t.server_bytes(b"250 ok\r\n354 go\r\n");
        t.client_bytes(b"Subject: secret body\r\n\r\nhello\r\n.\r\n");
        t.server_bytes(b"250 queued\r\n");
        let text = t.lines().join("\n");
        assert!(!text.contains("secret body"), "{text}");
        assert!(text.contains("C: <message: 31 bytes>"), "{text}");

        // Every recipient refused: DATA is refused too, and what follows is commands again.
        let mut t = Transcript::default();
        t.client_bytes(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n");
        t.server_bytes(b"250 ok\r\n550 no such user\r\n554 no valid recipients\r\n");
        t.client_bytes(b"RSET\r\n");
        t.server_bytes(b"250 reset\r\n");
        assert!(
            t.lines().contains(&"C: RSET".to_string()),
            "{:?}",
            t.lines()
        );
    }

    /// The next message's commands written behind a body, and one read bringing the body's
    /// reply with theirs: each transaction keeps its own lines, and the next body is masked.
    #[test]
    fn a_split_gives_each_transaction_its_own_lines() {
        let mut t = Transcript::default();
        t.client_bytes(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n");
        t.server_bytes(b"250 ok\r\n250 ok\r\n354 go\r\n");
        t.client_bytes(b"Subject: first\r\n\r\none\r\n.\r\n");
        t.split();
        t.client_bytes(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<e@d.example>\r\nDATA\r\n");
        t.server_bytes(b"250-queued as 1\r\n250 really\r\n250 ok\r\n250 ok\r\n354 go\r\n");
        t.client_bytes(b"Subject: second secret\r\n\r\ntwo\r\n.\r\n");
        t.server_bytes(b"250 queued as 2\r\n");
        let first = t.take_previous().expect("split");
        assert_eq!(
            first[first.len() - 4..],
            [
                "C: <message: 23 bytes>",
                "C: .",
                "S: 250-queued as 1",
                "S: 250 really"
            ],
            "{first:?}"
        );
        assert_eq!(
            t.lines(),
            [
                "C: MAIL FROM:<a@b.example>",
                "C: RCPT TO:<e@d.example>",
                "C: DATA",
                "S: 250 ok",
                "S: 250 ok",
                "S: 354 go",
                "C: <message: 31 bytes>",
                "C: .",
                "S: 250 queued as 2"
            ]
        );
        assert!(t.take_previous().is_none(), "taken once");
    }
}
