//! Accepting messages: check, render templates, and store — durably — before answering.
//!
//! The store writes every submission that arrived meanwhile in one transaction (group commit:
//! with `synchronous=FULL` each commit costs an fsync, and sharing it keeps durability without
//! giving up throughput). A caller is answered only after the transaction holding its message
//! committed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Handed, Handoff};
use crate::domain::i18n::Locale;
use crate::domain::message::{Body, Content, MessageInput, MessageStatus};
use crate::domain::validation::FieldError;
use crate::store::{
    ClaimedContent, ClaimedMessage, Enqueued, NewMessage, OnCommit, RecipientRow, Store,
};
use crate::templates::{self, Lang, TemplateError, TemplateSet};

/// Why a message was not accepted. Nothing is stored in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the message is not valid")]
    Invalid(Vec<FieldError>),
    #[error("the message is {size} bytes; the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("unknown template `{0}`")]
    UnknownTemplate(String),
    #[error(transparent)]
    Template(TemplateError),
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
}

/// The answer to an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub id: String,
    pub status: MessageStatus,
    /// The idempotency key was seen before: this is the first message.
    pub replayed: bool,
}

#[derive(Clone)]
pub struct Intake {
    wake: Arc<Notify>,
    store: Arc<dyn Store>,
    max_message_bytes: usize,
    max_lifetime: Duration,
    /// This node's dispatcher, when there is one (`serve`; not `cartero send`).
    handoff: Option<Handoff>,
}

impl Intake {
    /// `wake` is notified after a message is queued (the dispatcher waits on it). With a
    /// `handoff`, a message is given straight to the dispatcher when it has a free slot.
    pub fn new(
        store: Arc<dyn Store>,
        wake: Arc<Notify>,
        max_message_bytes: usize,
        max_lifetime: Duration,
        handoff: Option<Handoff>,
    ) -> Intake {
        Intake {
            wake,
            store,
            max_message_bytes,
            max_lifetime,
            handoff,
        }
    }

    /// Tells the dispatcher that something became due (a retried message).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Checks, renders and stores one message; returns once it is durably committed.
    pub async fn submit(
        &self,
        project_id: &str,
        input: &MessageInput,
        idempotency_key: Option<&str>,
        request_locale: Locale,
    ) -> Result<Accepted, SubmitError> {
        if let Some(key) = idempotency_key
            && (key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(SubmitError::Invalid(vec![FieldError::invalid(
                "Idempotency-Key",
                "The Idempotency-Key header must be 1–255 visible ASCII characters.",
                "La cabecera Idempotency-Key debe tener de 1 a 255 caracteres ASCII visibles.",
            )]));
        }
        let draft = input.parse().map_err(SubmitError::Invalid)?;
        if draft.size > self.max_message_bytes {
            return Err(SubmitError::TooLarge {
                size: draft.size,
                max: self.max_message_bytes,
            });
        }
        let content = match draft.body {
            Body::Content(c) => c,
            Body::Template {
                name,
                vars,
                locale,
                reply_to,
                headers,
                attachments,
            } => {
                let set = self.template_set(project_id, &name).await?;
                let lang = match locale.unwrap_or(request_locale) {
                    Locale::Es => Lang::Es,
                    Locale::En => Lang::En,
                };
                let rendered =
                    templates::render(&set, lang, &vars).map_err(SubmitError::Template)?;
                Content::Fields {
                    subject: rendered.subject,
                    text: Some(rendered.text),
                    html: rendered.html,
                    reply_to,
                    headers,
                    attachments,
                    template: Some(name),
                }
            }
        };
        // Written into a buffer sized for it up front: growing a 4 KB body's JSON from empty
        // took five reallocations (~1 % of the server's CPU per message).
        let mut content_json = String::with_capacity(draft.size / 3 * 4 + 1024);
        content.write_json(&mut content_json);
        let now = super::now_ms();
        let id = uuid::Uuid::now_v7().to_string();
        let slot = self.handoff.as_ref().and_then(|h| h.reserve(now));
        let message = NewMessage {
            id: id.clone(),
            project_id: project_id.to_string(),
            message_type: draft.message_type.as_str().to_string(),
            content: content_json,
            size: draft.size,
            idempotency_key: idempotency_key.map(str::to_string),
            recipients: draft
                .recipients
                .iter()
                .map(|r| (r.address.to_string(), r.kind))
                .collect(),
            now_ms: now,
            expires_at_ms: now + self.max_lifetime.as_millis() as i64,
            lease_until_ms: slot.as_ref().map(|(_, lease_until)| *lease_until),
        };
        // What the dispatcher needs, kept before the message moves to the store.
        let handed = slot.map(|(permit, _)| Handed {
            message: ClaimedMessage {
                id: message.id.clone(),
                project_id: message.project_id.clone(),
                message_type: message.message_type.clone(),
                content: ClaimedContent::Parsed(content),
                message_id_header: None,
                attempt_count: 0,
                expires_at_ms: message.expires_at_ms,
                recipients: (0..)
                    .zip(&message.recipients)
                    .map(|(position, (address, kind))| RecipientRow {
                        position,
                        address: address.clone(),
                        kind: *kind,
                        status: "pending".into(),
                        reply: None,
                    })
                    .collect(),
            },
            permit,
        });
        // The store groups concurrent submissions into one commit (group commit) and answers
        // each once it is durable. A message for this node's dispatcher is handed over by the
        // store as soon as its commit is known, on the writer's side, so a caller that goes
        // away (a client that hangs up) cannot leave a stored message claimed but never handed
        // to the dispatcher.
        let queued = message.lease_until_ms.is_none();
        let on_commit = match (&self.handoff, handed) {
            (Some(handoff), Some(handed)) => {
                let handoff = handoff.clone();
                Some(Box::new(move |out: &Result<Vec<Enqueued>, _>| {
                    if let Ok([Enqueued::New]) = out.as_deref() {
                        handoff.hand(handed);
                    }
                }) as OnCommit)
            }
            _ => None,
        };
        let stored = self
            .store
            .enqueue(vec![message], on_commit)
            .await
            .map(|mut v| v.pop());
        match stored {
            Err(e) => {
                tracing::error!(error = %e, "storing a message failed");
                Err(SubmitError::Unavailable(e.to_string()))
            }
            Ok(None) => Err(SubmitError::Unavailable(
                "the store answered no outcome".into(),
            )),
            Ok(Some(Enqueued::New)) => {
                if queued {
                    // Stored in the queue: the dispatcher claims it.
                    self.wake.notify_one();
                }
                metrics::counter!("cartero_accepted_total").increment(1);
                Ok(Accepted {
                    id,
                    status: MessageStatus::Queued,
                    replayed: false,
                })
            }
            Ok(Some(Enqueued::Existing { id, status })) => Ok(Accepted {
                id,
                status,
                replayed: true,
            }),
        }
    }

    /// A project's own template, else the built-in one.
    pub async fn template_set(
        &self,
        project_id: &str,
        name: &str,
    ) -> Result<TemplateSet, SubmitError> {
        let stored = self
            .store
            .get_template(project_id, name)
            .await
            .map_err(|e| SubmitError::Unavailable(e.to_string()))?;
        match stored {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| SubmitError::Unavailable(format!("stored template `{name}`: {e}"))),
            None => templates::builtin(name)
                .ok_or_else(|| SubmitError::UnknownTemplate(name.to_string())),
        }
    }
}
