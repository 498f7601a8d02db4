//! Turns a stored message into the bytes that go after DATA, for one account.
//!
//! The account decides the From (its address and *Nombre del Remitente*) and the Message-ID's
//! domain; the Message-ID is fixed at the first attempt (`<message id>@<domain>`) and reused
//! by every retry, so receivers can drop duplicates. With Microsoft 365 compatibility a From
//! other than the authenticated mailbox is replaced by the mailbox (Exchange refuses it with
//! `SendAsDenied`), and the intended address moves to Reply-To.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mail_send::mail_builder::MessageBuilder;
use mail_send::mail_builder::headers::address::Address;
use mail_send::mail_builder::headers::text::Text;
use mail_send::mail_builder::mime::{BodyPart, MimePart};
use std::borrow::Cow;

use crate::domain::account::AccountSpec;
use crate::domain::message::{Content, RecipientKind};
use crate::store::RecipientRow;

/// A message ready for one account.
#[derive(Debug, Clone)]
pub struct Composed {
    pub bytes: Vec<u8>,
    /// MAIL FROM.
    pub envelope_from: String,
    /// `<local@domain>` without the angle brackets.
    pub message_id: String,
    /// What cartero changed and why (kept on the attempt).
    pub note: Option<String>,
}

/// The sender a message goes out as: the account's address, or — Microsoft 365
/// compatibility — the authenticated mailbox when they differ.
pub fn sender_of(spec: &AccountSpec) -> (String, Option<String>) {
    if spec.microsoft365
        && let Some(user) = spec.username.as_deref().filter(|u| u.contains('@'))
        && !user.eq_ignore_ascii_case(spec.from_email.as_str())
    {
        return (
            user.to_string(),
            Some(format!(
                "Microsoft 365 compatibility: From {} rewritten to the mailbox {user}; the original address is in Reply-To",
                spec.from_email
            )),
        );
    }
    (spec.from_email.to_string(), None)
}

pub fn compose(
    content: &Content,
    spec: &AccountSpec,
    message_id: &str,
    recipients: &[RecipientRow],
    now_unix: i64,
) -> Composed {
    let (envelope_from, note) = sender_of(spec);
    match content {
        Content::Raw { data_base64 } => {
            let raw = B64.decode(data_base64).unwrap_or_default();
            Composed {
                bytes: complete_raw(raw, message_id, now_unix),
                envelope_from,
                message_id: message_id.to_string(),
                note,
            }
        }
        Content::Fields {
            subject,
            text,
            html,
            reply_to,
            headers,
            attachments,
            template: _,
        } => {
            let from_name = spec.from_name.clone().unwrap_or_default();
            let mut builder = MessageBuilder::new()
                .from(if from_name.is_empty() {
                    Address::from(envelope_from.clone())
                } else {
                    Address::from((from_name, envelope_from.clone()))
                })
                .subject(subject.as_str())
                .message_id(message_id.to_string())
                .date(now_unix);
            let list = |kind: RecipientKind| -> Vec<Address<'_>> {
                recipients
                    .iter()
                    .filter(|r| r.kind == kind)
                    .map(|r| Address::from(r.address.as_str()))
                    .collect()
            };
            let to = list(RecipientKind::To);
            if !to.is_empty() {
                builder = builder.to(to);
            } else {
                // Only Bcc/Cc recipients: an empty group keeps the To header valid (RFC 5322 §3.6.3).
                builder = builder.header("To", Text::new("undisclosed-recipients:;"));
            }
            let cc = list(RecipientKind::Cc);
            if !cc.is_empty() {
                builder = builder.cc(cc);
            }
            let reply_to = reply_to.clone().or_else(|| {
                (envelope_from != spec.from_email.as_str())
                    .then(|| spec.from_email.to_string())
                    .or_else(|| spec.reply_to.as_ref().map(ToString::to_string))
            });
            if let Some(r) = reply_to {
                builder = builder.reply_to(r);
            }
            for (name, value) in headers {
                builder = builder.header(name.as_str(), Text::new(value.as_str()));
            }
            builder.text_body = text.as_deref().map(|t| text_part("text/plain", t));
            builder.html_body = html.as_deref().map(|h| text_part("text/html", h));
            for a in attachments {
                let data = B64.decode(&a.data_base64).unwrap_or_default();
                builder = builder.attachment(a.content_type.as_str(), a.filename.as_str(), data);
            }
            Composed {
                bytes: builder.write_to_vec().unwrap_or_default(),
                envelope_from,
                message_id: message_id.to_string(),
                note,
            }
        }
    }
}

/// A text or HTML body part. Text that SMTP carries as it is goes as `7bit` (see
/// [`seven_bit`]); the rest as mail-builder chooses, quoted-printable or base64.
///
/// mail-builder sends `7bit` only when every line fits in 76 characters, and an application's
/// text rarely does (a paragraph is one line): it then wrote the whole text quoted-printable,
/// ~7 % of the server's instructions per message for the benchmark's 4 KB of 80-character
/// lines (callgrind), and a body that no longer reads as it was written.
fn text_part<'x>(content_type: &'static str, text: &'x str) -> MimePart<'x> {
    match seven_bit(text) {
        Some(body) => MimePart::new(content_type, BodyPart::Text(body)).transfer_encoding("7bit"),
        None => MimePart::new(content_type, BodyPart::Text(text.into())),
    }
}

/// The longest line `7bit` may carry, CRLF not counted (RFC 5322 §2.1.1, RFC 2045 §2.7).
const MAX_7BIT_LINE: usize = 998;

/// `text` as a `7bit` body, every line ending in CRLF, when it may go so: US-ASCII without
/// control characters but tab, line ends either CRLF or LF (made CRLF), no line longer than
/// [`MAX_7BIT_LINE`], and none ending in a space or tab, which some relays strip (RFC 2045
/// §6.7, note 3); quoted-printable keeps those. `None` when it may not.
fn seven_bit(text: &str) -> Option<Cow<'_, str>> {
    let bytes = text.as_bytes();
    let mut lines = Lines {
        bytes,
        start: 0,
        bare_lf: false,
    };
    // Sixteen bytes at a time: most blocks hold none below 0x20 or above 0x7e.
    let (blocks, _) = bytes.as_chunks::<16>();
    for (k, block) in blocks.iter().enumerate() {
        // Written without branches so that the compiler checks the sixteen bytes at once.
        let any = block
            .iter()
            .fold(false, |any, &b| any | !(0x20..0x7f).contains(&b));
        if !any {
            continue;
        }
        let (words, _) = block.as_chunks::<8>();
        for (w, word) in words.iter().enumerate() {
            let mut candidates = unusual(u64::from_le_bytes(*word));
            while candidates != 0 {
                lines.byte(k * 16 + w * 8 + candidates.trailing_zeros() as usize / 8)?;
                candidates &= candidates - 1;
            }
        }
    }
    for i in blocks.len() * 16..bytes.len() {
        lines.byte(i)?;
    }
    lines.end(bytes.len())?;
    if !lines.bare_lf {
        return Some(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len() + text.len() / 32 + 2);
    let mut start = 0;
    for lf in memchr::memchr_iter(b'\n', bytes) {
        let end = if lf > start && bytes[lf - 1] == b'\r' {
            lf - 1
        } else {
            lf
        };
        out.push_str(&text[start..end]);
        out.push_str("\r\n");
        start = lf + 1;
    }
    out.push_str(&text[start..]);
    Some(Cow::Owned(out))
}

/// The high bit of each of the eight bytes that may be below 0x20 or above 0x7e: every one
/// that is, and possibly bytes above one that is (a borrow carries into the next byte), which
/// [`Lines::byte`] passes over.
fn unusual(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(n * ONES) & !x & HIGH;
    below(word, 0x20) | below(word ^ (0x7f * ONES), 1) | (word & HIGH)
}

/// [`seven_bit`]'s walk through the lines.
struct Lines<'a> {
    bytes: &'a [u8],
    /// Where the current line begins.
    start: usize,
    bare_lf: bool,
}

impl Lines<'_> {
    /// The byte at `i`, one of [`unusual`]'s candidates; `None` when `7bit` cannot carry it.
    fn byte(&mut self, i: usize) -> Option<()> {
        match self.bytes[i] {
            b' '..=b'~' | b'\t' => Some(()),
            b'\n' => {
                let end = if i > self.start && self.bytes[i - 1] == b'\r' {
                    i - 1
                } else {
                    self.bare_lf = true;
                    i
                };
                self.end(end)?;
                self.start = i + 1;
                Some(())
            }
            b'\r' if self.bytes.get(i + 1) == Some(&b'\n') => Some(()),
            _ => None,
        }
    }

    /// The current line ends (its line end not counted) at `end`.
    fn end(&self, end: usize) -> Option<()> {
        let line = &self.bytes[self.start..end];
        (line.len() <= MAX_7BIT_LINE && !matches!(line.last(), Some(b' ' | b'\t'))).then_some(())
    }
}

/// Adds a Message-ID and a Date to a raw message that lacks them.
fn complete_raw(raw: Vec<u8>, message_id: &str, now_unix: i64) -> Vec<u8> {
    let header_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..header_end]).to_ascii_lowercase();
    let has =
        |name: &str| head.starts_with(&format!("{name}:")) || head.contains(&format!("\n{name}:"));
    let mut extra = String::new();
    if !has("message-id") {
        extra.push_str(&format!("Message-ID: <{message_id}>\r\n"));
    }
    if !has("date") {
        let date = time::OffsetDateTime::from_unix_timestamp(now_unix)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_default();
        extra.push_str(&format!("Date: {date}\r\n"));
    }
    let mut out = extra.into_bytes();
    out.extend_from_slice(&raw);
    out
}

/// The Message-ID of a message's first attempt: its id at the sending domain.
pub fn message_id_for(message_id: &str, envelope_from: &str) -> String {
    let domain = envelope_from
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("cartero.invalid");
    format!("{message_id}@{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account::AccountInput;

    fn spec(extra: serde_json::Value) -> AccountSpec {
        let mut v = serde_json::json!({"name": "A", "host": "smtp.office365.com", "port": 587,
            "from_email": "ventas@acme.example", "from_name": "Acme Ventas", "username": "ops@acme.example", "password": "x"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        serde_json::from_value::<AccountInput>(v)
            .unwrap()
            .parse(false)
            .unwrap()
            .0
    }

    fn rcpt(address: &str, kind: RecipientKind) -> RecipientRow {
        RecipientRow {
            position: 0,
            address: address.into(),
            kind,
            status: "pending".into(),
            reply: None,
        }
    }

    #[test]
    fn fields_become_a_message_without_bcc_headers() {
        let content = Content::Fields {
            subject: "Factura 1042".into(),
            text: Some("Hola".into()),
            html: None,
            reply_to: None,
            headers: vec![("X-Invoice".into(), "1042".into())],
            attachments: vec![],
            template: None,
        };
        let c = compose(
            &content,
            &spec(serde_json::json!({})),
            "abc@acme.example",
            &[
                rcpt("ana@example.com", RecipientKind::To),
                rcpt("audit@acme.example", RecipientKind::Bcc),
            ],
            1_700_000_000,
        );
        let text = String::from_utf8(c.bytes).unwrap();
        assert!(text.contains("Message-ID: <abc@acme.example>"), "{text}");
        assert!(text.contains("X-Invoice: 1042"));
        assert!(text.contains("ana@example.com"));
        assert!(
            !text.contains("audit@acme.example"),
            "Bcc never appears in headers"
        );
        assert!(
            text.contains("\"Acme Ventas\" <ventas@acme.example>"),
            "{text}"
        );
        assert_eq!(c.envelope_from, "ventas@acme.example");
        assert!(c.note.is_none());
    }

    #[test]
    fn microsoft365_sends_as_the_mailbox() {
        let s = spec(serde_json::json!({"microsoft365": true}));
        let (from, note) = sender_of(&s);
        assert_eq!(from, "ops@acme.example");
        assert!(note.unwrap().contains("Reply-To"));
        let content = Content::Fields {
            subject: "s".into(),
            text: Some("t".into()),
            html: None,
            reply_to: None,
            headers: vec![],
            attachments: vec![],
            template: None,
        };
        let c = compose(
            &content,
            &s,
            "m@acme.example",
            &[rcpt("ana@example.com", RecipientKind::To)],
            0,
        );
        let text = String::from_utf8(c.bytes).unwrap();
        assert!(text.contains("Reply-To: <ventas@acme.example>"), "{text}");
    }

    #[test]
    fn raw_messages_get_missing_headers_only() {
        let raw = B64.encode("Subject: hi\r\nMessage-ID: <own@x.example>\r\n\r\nbody\r\n");
        let c = compose(
            &Content::Raw { data_base64: raw },
            &spec(serde_json::json!({})),
            "m@acme.example",
            &[],
            0,
        );
        let text = String::from_utf8(c.bytes).unwrap();
        assert!(text.starts_with("Date: "));
        assert!(!text.contains("m@acme.example"));
    }

    fn fields(text: &str, html: Option<&str>) -> Vec<u8> {
        let content = Content::Fields {
            subject: "s".into(),
            text: Some(text.into()),
            html: html.map(Into::into),
            reply_to: None,
            headers: vec![],
            attachments: vec![],
            template: None,
        };
        compose(
            &content,
            &spec(serde_json::json!({})),
            "m@acme.example",
            &[rcpt("ana@example.com", RecipientKind::To)],
            0,
        )
        .bytes
    }

    /// The body after the (only) part's header block.
    fn body_of(message: &[u8]) -> String {
        let text = String::from_utf8(message.to_vec()).unwrap();
        text.split_once("\r\n\r\n").unwrap().1.to_string()
    }

    #[test]
    fn long_ascii_lines_go_as_they_are_written() {
        let line =
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.";
        let text = format!("{line}\n{line}\n\n{}\nfin", "x".repeat(MAX_7BIT_LINE));
        let message = fields(&text, None);
        let head = String::from_utf8_lossy(&message);
        assert!(
            head.contains("Content-Transfer-Encoding: 7bit\r\n"),
            "{head}"
        );
        assert_eq!(body_of(&message), text.replace('\n', "\r\n"));
        // Already CRLF: the same bytes.
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(body_of(&fields(&crlf, None)), crlf);
    }

    #[test]
    fn text_that_7bit_cannot_carry_is_encoded() {
        let long = "y".repeat(MAX_7BIT_LINE + 1);
        let refused = [
            "Factura nº 1042: gracias, José",
            long.as_str(),
            "trailing space \nnext",
            "trailing tab\t",
        ];
        for text in refused {
            assert!(seven_bit(text).is_none(), "{text:?}");
            let message = fields(text, None);
            let head = String::from_utf8_lossy(&message);
            assert!(
                head.contains("Content-Transfer-Encoding: quoted-printable")
                    || head.contains("Content-Transfer-Encoding: base64"),
                "{text:?}: {head}"
            );
        }
        // These go as mail-builder chooses (it sends a lone CR or a control character as it is).
        for text in [
            "lone\rcarriage return",
            "ends in a carriage return\r",
            "bell \u{7} character",
        ] {
            assert!(seven_bit(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn text_and_html_are_each_7bit_in_the_alternative() {
        let text = format!("{}\nline two", "t".repeat(120));
        let html = format!("<p>{}</p>\n", "h".repeat(300));
        let message = String::from_utf8(fields(&text, Some(&html))).unwrap();
        assert!(message.contains("multipart/alternative"), "{message}");
        assert_eq!(
            message.matches("Content-Transfer-Encoding: 7bit").count(),
            2
        );
        assert!(message.contains(&text.replace('\n', "\r\n")));
        assert!(message.contains(&html.replace('\n', "\r\n")));
        assert!(
            message.contains("text/html; charset=\"utf-8\"")
                || message.contains("text/html; charset=utf-8"),
            "{message}"
        );
    }

    /// [`seven_bit`] as its doc comment says it, one line at a time.
    fn seven_bit_plainly(text: &str) -> Option<String> {
        let ok = |c: char| c == '\t' || c == '\r' || c == '\n' || (' '..='~').contains(&c);
        if !text.chars().all(ok) {
            return None;
        }
        let segments: Vec<&str> = text.split('\n').collect();
        let mut lines = Vec::new();
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let line = if last {
                *segment
            } else {
                segment.strip_suffix('\r').unwrap_or(segment)
            };
            if line.contains('\r') || line.len() > MAX_7BIT_LINE || line.ends_with([' ', '\t']) {
                return None;
            }
            lines.push(line);
        }
        Some(lines.join("\r\n"))
    }

    #[test]
    fn seven_bit_agrees_with_its_plain_statement() {
        // Every text of up to six characters from these, at every offset in an eight-byte word.
        let alphabet = ['a', ' ', '\t', '\r', '\n', 'é', '\u{7f}', '\u{1}'];
        let mut texts = vec![String::new()];
        let mut checked = 0;
        for _ in 0..6 {
            let mut longer = Vec::new();
            for t in &texts {
                for c in alphabet {
                    let mut t = t.clone();
                    t.push(c);
                    longer.push(t);
                }
            }
            for t in &longer {
                for pad in ["", "abc", "abcdefgh", "abcdefghijkl"] {
                    let text = format!("{pad}{t}{pad}");
                    assert_eq!(
                        seven_bit(&text).map(Cow::into_owned),
                        seven_bit_plainly(&text),
                        "{text:?}"
                    );
                    checked += 1;
                }
            }
            texts = longer;
        }
        assert!(checked > 1_000_000);
    }
}
