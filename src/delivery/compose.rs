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
            if let Some(t) = text {
                builder = builder.text_body(t.as_str());
            }
            if let Some(h) = html {
                builder = builder.html_body(h.as_str());
            }
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
}
