//! A message as applications submit it, checked at the door.
//!
//! [`MessageInput`] is the JSON of `POST /v1/messages` (and what the CLI builds);
//! [`MessageInput::parse`] turns it into a [`Draft`] or the list of fields to fix. Addresses,
//! subject, header names and values, attachment names: none may carry CR or LF — a line break
//! in a header value is how header injection works (RFC 5322 §2.2), so it is refused, never
//! stripped.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::account::{AccountType, EmailAddress};
use super::i18n::{Locale, Text};
use super::validation::FieldError;

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Stored, waiting for its first attempt.
    Queued,
    /// Claimed by a dispatcher (under a lease).
    Sending,
    /// Waiting for a retry (a transient failure, throttling, or no account).
    Deferred,
    /// Accepted by a server for every recipient.
    Sent,
    /// Accepted for some recipients, permanently refused for the others.
    Partial,
    /// Permanently refused, or out of retries.
    Failed,
    Cancelled,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 7] = [
        MessageStatus::Queued,
        MessageStatus::Sending,
        MessageStatus::Deferred,
        MessageStatus::Sent,
        MessageStatus::Partial,
        MessageStatus::Failed,
        MessageStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Deferred => "deferred",
            MessageStatus::Sent => "sent",
            MessageStatus::Partial => "partial",
            MessageStatus::Failed => "failed",
            MessageStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<MessageStatus> {
        MessageStatus::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// No more attempts will be made.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MessageStatus::Sent
                | MessageStatus::Partial
                | MessageStatus::Failed
                | MessageStatus::Cancelled
        )
    }
}

/// One attachment as submitted.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentInput {
    pub filename: String,
    pub content_type: Option<String>,
    pub content_base64: String,
}

/// The body of `POST /v1/messages`. Exactly one of: `subject` + `text`/`html`; `template` +
/// `vars`; `raw` (a whole RFC 5322 message, base64).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageInput {
    /// Which accounts may send it (`system`, `billing`…); default `system`.
    #[serde(rename = "type")]
    pub message_type: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub reply_to: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentInput>,
    pub template: Option<String>,
    #[schema(value_type = Object)]
    pub vars: Option<serde_json::Value>,
    /// `es` or `en`, for templates; default: the request's language.
    pub locale: Option<String>,
    /// A complete message (headers and body), base64, sent as it is (a Message-ID and a Date
    /// are added when missing); the envelope sender is the account's address.
    pub raw: Option<String>,
}

/// Recipient kinds (BCC recipients get the message but no header naming them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientKind {
    To,
    Cc,
    Bcc,
}

impl RecipientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientKind::To => "to",
            RecipientKind::Cc => "cc",
            RecipientKind::Bcc => "bcc",
        }
    }

    pub fn parse(s: &str) -> Option<RecipientKind> {
        match s {
            "to" => Some(RecipientKind::To),
            "cc" => Some(RecipientKind::Cc),
            "bcc" => Some(RecipientKind::Bcc),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub address: EmailAddress,
    pub kind: RecipientKind,
}

/// An attachment, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    /// Base64, as stored in the message's JSON content.
    pub data_base64: String,
}

/// What to send, fixed at acceptance (a template is rendered before the message is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Content {
    // Stored as `Content::write_json` writes it (`json_text`): the same JSON as this derive's,
    // with less work. A field added here goes there too; the tests compare the two.
    Fields {
        subject: String,
        text: Option<String>,
        html: Option<String>,
        reply_to: Option<String>,
        headers: Vec<(String, String)>,
        attachments: Vec<Attachment>,
        /// The template it was rendered from, for the message log.
        template: Option<String>,
    },
    Raw {
        data_base64: String,
    },
}

/// What the body asks for, before templates are rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Content(Content),
    Template {
        name: String,
        vars: serde_json::Value,
        locale: Option<Locale>,
        reply_to: Option<String>,
        headers: Vec<(String, String)>,
        attachments: Vec<Attachment>,
    },
}

/// A message that passed the door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub message_type: AccountType,
    pub recipients: Vec<Recipient>,
    pub body: Body,
    /// Bytes of content (text, HTML, decoded attachments or raw message).
    pub size: usize,
}

/// Most recipients per message.
pub const MAX_RECIPIENTS: usize = 100;

/// Headers an application may not set: cartero writes them itself.
const RESERVED_HEADERS: [&str; 14] = [
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "reply-to",
    "sender",
    "return-path",
    "received",
];

fn injection(field: &str) -> FieldError {
    FieldError {
        field: field.to_string(),
        code: "header_injection",
        message: Text::new(
            format!(
                "`{field}` contains a line break (CR or LF), which could inject mail headers: remove it."
            ),
            format!(
                "«{field}» contiene un salto de línea (CR o LF), que podría inyectar cabeceras de correo: quítelo."
            ),
        ),
    }
}

fn has_line_break(s: &str) -> bool {
    s.contains(['\r', '\n'])
}

impl MessageInput {
    /// Checks every field; `max_size` is the largest message cartero accepts.
    pub fn parse(&self) -> Result<Draft, Vec<FieldError>> {
        let mut errors = Vec::new();

        let message_type = match self.message_type.as_deref() {
            None => Some(AccountType::system()),
            Some(t) => match AccountType::parse(t) {
                Ok(t) => Some(t),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };

        let mut recipients = Vec::new();
        for (kind, list, name) in [
            (RecipientKind::To, &self.to, "to"),
            (RecipientKind::Cc, &self.cc, "cc"),
            (RecipientKind::Bcc, &self.bcc, "bcc"),
        ] {
            for (i, raw) in list.iter().enumerate() {
                let field = format!("{name}[{i}]");
                if has_line_break(raw) {
                    errors.push(injection(&field));
                    continue;
                }
                match EmailAddress::parse(&field, raw) {
                    Ok(address) => {
                        if !recipients.iter().any(|r: &Recipient| r.address == address) {
                            recipients.push(Recipient { address, kind });
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        if recipients.is_empty() && errors.is_empty() {
            errors.push(FieldError::invalid(
                "to",
                "Give at least one recipient in `to`, `cc` or `bcc`.",
                "Indique al menos un destinatario en `to`, `cc` o `bcc`.",
            ));
        }
        if recipients.len() > MAX_RECIPIENTS {
            errors.push(FieldError::invalid(
                "to",
                format!("At most {MAX_RECIPIENTS} recipients per message: split the list."),
                format!("Como máximo {MAX_RECIPIENTS} destinatarios por mensaje: divida la lista."),
            ));
        }

        let reply_to = match &self.reply_to {
            Some(r) if has_line_break(r) => {
                errors.push(injection("reply_to"));
                None
            }
            Some(r) if !r.trim().is_empty() => match EmailAddress::parse("reply_to", r) {
                Ok(r) => Some(r.to_string()),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            _ => None,
        };

        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            let valid_name = !name.is_empty()
                && name.len() <= 76
                && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            if !valid_name {
                errors.push(FieldError::invalid(
                    field,
                    "A header name must be printable ASCII without spaces or colons (e.g. X-Invoice).",
                    "El nombre de una cabecera debe ser ASCII imprimible sin espacios ni dos puntos (p. ej. X-Invoice).",
                ));
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                errors.push(FieldError::invalid(
                    field,
                    format!("`{name}` is set by cartero: use the message's own fields (to, subject, reply_to…)."),
                    format!("cartero establece «{name}»: use los campos propios del mensaje (to, subject, reply_to…)."),
                ));
            } else if has_line_break(value) {
                errors.push(injection(&field));
            } else if value.len() > 998 {
                errors.push(FieldError::invalid(
                    field,
                    "A header value may be at most 998 characters (RFC 5322 §2.1.1).",
                    "El valor de una cabecera puede tener como máximo 998 caracteres (RFC 5322 §2.1.1).",
                ));
            } else {
                headers.push((name.clone(), value.clone()));
            }
        }

        let mut size = 0usize;
        let mut attachments = Vec::new();
        for (i, a) in self.attachments.iter().enumerate() {
            let field = format!("attachments[{i}]");
            if has_line_break(&a.filename) || a.content_type.as_deref().is_some_and(has_line_break)
            {
                errors.push(injection(&format!("{field}.filename")));
                continue;
            }
            if a.filename.trim().is_empty()
                || a.filename.len() > 255
                || a.filename.chars().any(char::is_control)
            {
                errors.push(FieldError::invalid(
                    format!("{field}.filename"),
                    "An attachment needs a file name of 1–255 characters.",
                    "Un adjunto necesita un nombre de archivo de 1 a 255 caracteres.",
                ));
                continue;
            }
            let content_type = a
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into());
            let valid_type = content_type.split_once('/').is_some_and(|(t, s)| {
                !t.is_empty()
                    && !s.is_empty()
                    && content_type
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b';')
            });
            if !valid_type {
                errors.push(FieldError::invalid(
                    format!("{field}.content_type"),
                    "The content type must look like `application/pdf`.",
                    "El tipo de contenido debe tener la forma `application/pdf`.",
                ));
                continue;
            }
            let compact: String = a
                .content_base64
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            match B64.decode(&compact) {
                Ok(bytes) => {
                    size += bytes.len();
                    attachments.push(Attachment {
                        filename: a.filename.trim().to_string(),
                        content_type,
                        data_base64: compact,
                    });
                }
                Err(_) => errors.push(FieldError::invalid(
                    format!("{field}.content_base64"),
                    "The attachment content is not valid base64.",
                    "El contenido del adjunto no es base64 válido.",
                )),
            }
        }

        let has_fields = self.subject.is_some() || self.text.is_some() || self.html.is_some();
        let kinds = [has_fields, self.template.is_some(), self.raw.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        let mut body = None;
        if kinds != 1 {
            errors.push(FieldError::invalid(
                "body",
                "Give exactly one of: `subject` with `text` and/or `html`; `template` with `vars`; or `raw`.",
                "Indique exactamente uno de: `subject` con `text` y/o `html`; `template` con `vars`; o `raw`.",
            ));
        } else if let Some(raw) = &self.raw {
            let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
            match B64.decode(&compact) {
                Ok(bytes) if bytes.windows(4).any(|w| w == b"\r\n\r\n") || bytes.windows(2).any(|w| w == b"\n\n") => {
                    size += bytes.len();
                    if !self.headers.is_empty() || !self.attachments.is_empty() || self.reply_to.is_some() {
                        errors.push(FieldError::invalid(
                            "raw",
                            "A raw message carries its own headers and attachments: leave `headers`, `attachments` and `reply_to` out.",
                            "Un mensaje raw lleva sus propias cabeceras y adjuntos: omita `headers`, `attachments` y `reply_to`.",
                        ));
                    }
                    body = Some(Body::Content(Content::Raw { data_base64: compact }));
                }
                Ok(_) => errors.push(FieldError::invalid(
                    "raw",
                    "The raw message has no blank line between headers and body (RFC 5322 §2.1).",
                    "El mensaje raw no tiene una línea en blanco entre cabeceras y cuerpo (RFC 5322 §2.1).",
                )),
                Err(_) => errors.push(FieldError::invalid(
                    "raw",
                    "`raw` must be the whole message encoded in base64.",
                    "`raw` debe ser el mensaje completo codificado en base64.",
                )),
            }
        } else if let Some(name) = &self.template {
            let locale = match self.locale.as_deref() {
                None => None,
                Some(l) => match Locale::from_tag(l) {
                    Some(l) => Some(l),
                    None => {
                        errors.push(FieldError::invalid(
                            "locale",
                            "`locale` must be `es` or `en`.",
                            "`locale` debe ser `es` o `en`.",
                        ));
                        None
                    }
                },
            };
            let vars = self.vars.clone().unwrap_or_else(|| serde_json::json!({}));
            if !vars.is_object() {
                errors.push(FieldError::invalid(
                    "vars",
                    "`vars` must be an object of names and values.",
                    "`vars` debe ser un objeto de nombres y valores.",
                ));
            }
            size += vars.to_string().len();
            body = Some(Body::Template {
                name: name.clone(),
                vars,
                locale,
                reply_to: reply_to.clone(),
                headers: headers.clone(),
                attachments: attachments.clone(),
            });
        } else {
            let subject = self.subject.clone().unwrap_or_default();
            if has_line_break(&subject) {
                errors.push(injection("subject"));
            } else if subject.trim().is_empty() {
                errors.push(FieldError::required("subject"));
            } else if subject.len() > 998 {
                errors.push(FieldError::invalid(
                    "subject",
                    "The subject may be at most 998 characters.",
                    "El asunto puede tener como máximo 998 caracteres.",
                ));
            }
            if self.text.is_none() && self.html.is_none() {
                errors.push(FieldError::invalid(
                    "text",
                    "Give the message's `text`, `html`, or both.",
                    "Indique el `text` del mensaje, el `html`, o ambos.",
                ));
            }
            size += self.text.as_ref().map_or(0, String::len)
                + self.html.as_ref().map_or(0, String::len);
            body = Some(Body::Content(Content::Fields {
                subject,
                text: self.text.clone(),
                html: self.html.clone(),
                reply_to,
                headers,
                attachments,
                template: None,
            }));
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Draft {
            message_type: message_type.expect("checked"),
            recipients,
            body: body.expect("checked"),
            size,
        })
    }
}

/// When to try again after the `attempt`-th transient failure: exponential from `base`
/// (first retry within a minute with the default 30 s), capped at an hour, with ±20 % jitter
/// (`jitter` in 0..1) so a burst of deferrals does not come back all at once.
pub fn retry_delay(attempt: u32, base: Duration, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let raw = base.as_secs_f64() * f64::from(1u32 << exp.min(16));
    let capped = raw.min(3600.0);
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    Duration::from_secs_f64(capped * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<Draft, Vec<FieldError>> {
        serde_json::from_value::<MessageInput>(v).unwrap().parse()
    }

    fn codes(r: Result<Draft, Vec<FieldError>>) -> Vec<(String, &'static str)> {
        r.unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    #[test]
    fn a_plain_message() {
        let d = parse(json!({"type": "billing", "to": ["Ana@Example.com"], "bcc": ["audit@acme.example"],
            "subject": "Factura 1042", "text": "Hola", "headers": {"X-Invoice": "1042"},
            "attachments": [{"filename": "f.pdf", "content_type": "application/pdf", "content_base64": "JVBERi0x"}]}))
        .unwrap();
        assert_eq!(d.message_type.as_str(), "billing");
        assert_eq!(d.recipients.len(), 2);
        assert_eq!(d.recipients[1].kind, RecipientKind::Bcc);
        assert_eq!(d.size, 4 + 6);
    }

    #[test]
    fn header_injection_is_refused_everywhere() {
        let c = codes(parse(
            json!({"to": ["ana@example.com\r\nBcc: x@evil.example"], "subject": "x", "text": "y"}),
        ));
        assert_eq!(c, vec![("to[0]".to_string(), "header_injection")]);
        let c = codes(parse(
            json!({"to": ["ana@example.com"], "subject": "Hola\nBcc: x@evil.example", "text": "y"}),
        ));
        assert_eq!(c, vec![("subject".to_string(), "header_injection")]);
        let c = codes(parse(
            json!({"to": ["ana@example.com"], "subject": "s", "text": "y", "headers": {"X-A": "1\r\nBcc: x@evil.example"}}),
        ));
        assert_eq!(c, vec![("headers.X-A".to_string(), "header_injection")]);
        let c = codes(parse(
            json!({"to": ["ana@example.com"], "subject": "s", "text": "y", "reply_to": "a@b.example\nX: y"}),
        ));
        assert_eq!(c, vec![("reply_to".to_string(), "header_injection")]);
    }

    #[test]
    fn exactly_one_kind_of_body() {
        let c = codes(parse(json!({"to": ["ana@example.com"]})));
        assert_eq!(c[0].0, "body");
        let c = codes(parse(
            json!({"to": ["ana@example.com"], "subject": "s", "text": "t", "template": "test"}),
        ));
        assert_eq!(c[0].0, "body");
        assert!(parse(json!({"to": ["ana@example.com"], "template": "test", "vars": {"a": 1}, "locale": "es"})).is_ok());
        let raw = B64.encode("Subject: hi\r\n\r\nbody\r\n");
        assert!(parse(json!({"to": ["ana@example.com"], "raw": raw})).is_ok());
        let c = codes(parse(
            json!({"to": ["ana@example.com"], "raw": B64.encode("no blank line")}),
        ));
        assert_eq!(c[0].0, "raw");
    }

    #[test]
    fn reserved_headers_and_bad_attachments() {
        let c = codes(parse(
            json!({"to": ["ana@example.com"], "subject": "s", "text": "t", "headers": {"From": "x@y.example"},
            "attachments": [{"filename": "a", "content_base64": "!!!"}]}),
        ));
        let fields: Vec<&str> = c.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            vec!["headers.From", "attachments[0].content_base64"]
        );
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let base = Duration::from_secs(30);
        assert!(retry_delay(1, base, 0.5) <= Duration::from_secs(60));
        assert!(retry_delay(2, base, 0.5) > retry_delay(1, base, 0.5));
        assert!(retry_delay(30, base, 1.0) <= Duration::from_secs(3600 * 12 / 10));
        assert!(retry_delay(1, base, 0.0) >= Duration::from_secs(24));
    }
}
