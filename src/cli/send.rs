//! `cartero send` and `cartero messages …`: the queue from the terminal.
//!
//! Messages go through the same intake as `POST /v1/messages` (validation, templates, group
//! commit) into the same database; a running `cartero serve` delivers them. A CSV batch gives
//! each row an idempotency key derived from the file's content and the row number, so running
//! the same file again after an interruption sends nothing twice.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use sha2::{Digest, Sha256};

use super::{UsageError, require_project, terminal_locale};
use crate::config::Config;
use crate::delivery::intake::{Intake, SubmitError};
use crate::domain::i18n::Locale;
use crate::domain::message::{MessageInput, MessageStatus};
use crate::http::messages::MessageView;
use crate::store::{DEFAULT_PROJECT, MessageFilter, StatusChange, Store};

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Message type: which accounts may send it (default system).
    #[arg(long = "type", value_name = "TYPE")]
    message_type: Option<String>,
    /// Recipient (repeat for several). With --csv, the CSV's `to` column instead.
    #[arg(long, value_name = "ADDR")]
    to: Vec<String>,
    #[arg(long, value_name = "ADDR")]
    cc: Vec<String>,
    #[arg(long, value_name = "ADDR")]
    bcc: Vec<String>,
    #[arg(long)]
    subject: Option<String>,
    /// Plain-text body.
    #[arg(long)]
    text: Option<String>,
    /// HTML body from a file.
    #[arg(long, value_name = "FILE")]
    html_file: Option<PathBuf>,
    /// Template name (built-in: user_invitation, password_reset, system_alert, test).
    #[arg(long)]
    template: Option<String>,
    /// Template variable NAME=VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// es or en (templates).
    #[arg(long)]
    locale: Option<String>,
    /// One message per CSV row: a `to` column, the other columns are template variables.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    #[arg(long)]
    idempotency_key: Option<String>,
    #[arg(long, default_value = DEFAULT_PROJECT)]
    project: String,
}

#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// The newest messages first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long = "type")]
        message_type: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, default_value = DEFAULT_PROJECT)]
        project: String,
        #[arg(long)]
        json: bool,
    },
    /// A message with its attempts (and SMTP transcripts) and events.
    Show {
        id: String,
        #[arg(long, default_value = DEFAULT_PROJECT)]
        project: String,
        #[arg(long)]
        json: bool,
    },
    /// Queue a failed, partial or deferred message again now.
    Retry {
        id: String,
        #[arg(long, default_value = DEFAULT_PROJECT)]
        project: String,
    },
    /// Cancel a queued or deferred message.
    Cancel {
        id: String,
        #[arg(long, default_value = DEFAULT_PROJECT)]
        project: String,
    },
}

fn intake(store: &Arc<dyn Store>, config: &Config) -> Intake {
    Intake::new(
        store.clone(),
        Arc::new(tokio::sync::Notify::new()),
        config.delivery.max_message_bytes,
        config.delivery.max_lifetime,
        // No dispatcher in this process: `serve` picks the messages up from the queue.
        None,
    )
}

fn explain(e: SubmitError, locale: Locale) -> anyhow::Error {
    let api = crate::http::error::ApiError::from(e);
    let mut lines = vec![api.message.get(locale).to_string()];
    for f in api.fields.iter().skip(1) {
        lines.push(format!("  {}: {}", f.field, f.message.get(locale)));
    }
    UsageError(lines.join("\n")).into()
}

fn parse_vars(vars: &[String]) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let mut map = serde_json::Map::new();
    for v in vars {
        let (k, val) = v
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--var `{v}` must be NAME=VALUE")))?;
        map.insert(
            k.trim().to_string(),
            serde_json::Value::String(val.to_string()),
        );
    }
    Ok(map)
}

pub async fn send(store: Arc<dyn Store>, config: &Config, args: SendArgs) -> anyhow::Result<()> {
    require_project(store.as_ref(), &args.project).await?;
    let locale = terminal_locale();
    let html = match &args.html_file {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let intake = intake(&store, config);
    if let Some(csv_path) = args.csv.clone() {
        return send_csv(&intake, &args, &csv_path, html, locale).await;
    }
    let vars = parse_vars(&args.vars)?;
    let input = MessageInput {
        message_type: args.message_type.clone(),
        to: args.to.clone(),
        cc: args.cc.clone(),
        bcc: args.bcc.clone(),
        subject: args.subject.clone(),
        text: args.text.clone(),
        html,
        template: args.template.clone(),
        vars: (!vars.is_empty()).then_some(serde_json::Value::Object(vars)),
        locale: args.locale.clone(),
        ..MessageInput::default()
    };
    let accepted = intake
        .submit(
            &args.project,
            &input,
            args.idempotency_key.as_deref(),
            locale,
        )
        .await
        .map_err(|e| explain(e, locale))?;
    println!("{}", accepted.id);
    eprintln!(
        "{}",
        match (locale, accepted.replayed) {
            (Locale::Es, false) => "Mensaje en cola; `cartero serve` lo entregará.",
            (Locale::Es, true) => "Ya estaba en cola con esa clave de idempotencia.",
            (Locale::En, false) => "Message queued; `cartero serve` delivers it.",
            (Locale::En, true) => "Already queued under that idempotency key.",
        }
    );
    Ok(())
}

async fn send_csv(
    intake: &Intake,
    args: &SendArgs,
    path: &PathBuf,
    html: Option<String>,
    locale: Locale,
) -> anyhow::Result<()> {
    if args.template.is_none() && args.subject.is_none() {
        return Err(UsageError(
            "--csv needs --template NAME (or --subject with --text/--html-file)".into(),
        )
        .into());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file_hash = hex::encode(&Sha256::digest(&bytes)[..8]);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let headers = reader
        .headers()
        .context("reading the CSV header row")?
        .clone();
    if !headers.iter().any(|h| h == "to") {
        return Err(UsageError(format!(
            "{}: the header row needs a `to` column",
            path.display()
        ))
        .into());
    }
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .collect::<Result<_, _>>()
        .context("reading the CSV rows")?;
    let fixed = parse_vars(&args.vars)?;
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} {per_sec} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let (mut queued, mut repeated) = (0usize, 0usize);
    let mut refused: Vec<(usize, String)> = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        let line = n + 2; // 1-based, after the header row
        let mut vars: BTreeMap<String, String> = fixed
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let mut to = Vec::new();
        for (h, v) in headers.iter().zip(row.iter()) {
            match h {
                "to" => to.extend(
                    v.split([';', ','])
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                ),
                _ => {
                    vars.insert(h.to_string(), v.to_string());
                }
            }
        }
        let input = MessageInput {
            message_type: args.message_type.clone(),
            to,
            subject: args.subject.clone(),
            text: args.text.clone(),
            html: html.clone(),
            template: args.template.clone(),
            vars: args
                .template
                .is_some()
                .then(|| serde_json::to_value(&vars).unwrap_or_default()),
            locale: vars.get("locale").cloned().or_else(|| args.locale.clone()),
            ..MessageInput::default()
        };
        let key = format!("csv:{file_hash}:{line}");
        match intake
            .submit(&args.project, &input, Some(&key), locale)
            .await
        {
            Ok(a) if a.replayed => repeated += 1,
            Ok(_) => queued += 1,
            Err(e) => {
                let reason = explain(e, locale).to_string().replace('\n', " ");
                refused.push((line, reason));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let es = locale == Locale::Es;
    println!(
        "{}",
        if es {
            format!(
                "{queued} en cola, {repeated} ya estaban en cola, {} rechazados (de {} filas).",
                refused.len(),
                rows.len()
            )
        } else {
            format!(
                "{queued} queued, {repeated} already queued, {} refused (of {} rows).",
                refused.len(),
                rows.len()
            )
        }
    );
    for (line, reason) in &refused {
        println!("  {} {line}: {reason}", if es { "fila" } else { "row" });
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(super::Quiet(1).into())
    }
}

pub async fn messages(
    store: Arc<dyn Store>,
    config: &Config,
    command: MessagesCommand,
) -> anyhow::Result<()> {
    let locale = terminal_locale();
    let not_found =
        || UsageError("no such message in this project (see `cartero messages list`)".into());
    match command {
        MessagesCommand::List {
            status,
            message_type,
            to,
            limit,
            project,
            json,
        } => {
            require_project(store.as_ref(), &project).await?;
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(
                    MessageStatus::parse(s)
                        .ok_or_else(|| UsageError(format!("unknown status `{s}`")))?,
                ),
            };
            let filter = MessageFilter {
                status,
                message_type,
                to: to.map(|t| t.to_ascii_lowercase()),
                limit: limit.clamp(1, 1000),
                ..MessageFilter::default()
            };
            let rows = store.list_messages(&project, &filter).await?;
            let views: Vec<MessageView> =
                rows.iter().map(|m| MessageView::new(m, locale)).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&views)?);
                return Ok(());
            }
            println!(
                "{:<38} {:<10} {:<10} {:<30} SUBJECT",
                "ID", "STATUS", "TYPE", "TO"
            );
            for v in views {
                let to = v
                    .recipients
                    .first()
                    .map(|r| r.address.clone())
                    .unwrap_or_default();
                println!(
                    "{:<38} {:<10} {:<10} {:<30} {}",
                    v.id,
                    v.status.as_str(),
                    v.message_type,
                    to,
                    v.subject.unwrap_or_else(|| "(raw)".into())
                );
            }
        }
        MessagesCommand::Show { id, project, json } => {
            let state_view = detail(store.as_ref(), &project, &id, locale)
                .await?
                .ok_or_else(not_found)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&state_view)?);
                return Ok(());
            }
            print_detail(&state_view);
        }
        MessagesCommand::Retry { id, project } => {
            let now = crate::delivery::now_ms();
            let expires = now + config.delivery.max_lifetime.as_millis() as i64;
            match store.retry_message(&project, &id, now, expires).await? {
                StatusChange::Done => {
                    crate::audit::record(
                        store.as_ref(),
                        &project,
                        &crate::audit::Actor::cli(),
                        "message.retry",
                        Some(&id),
                        None,
                    )
                    .await;
                    println!("Queued {id} again.")
                }
                StatusChange::NotFound => return Err(not_found().into()),
                StatusChange::NotAllowed(s) => {
                    return Err(
                        UsageError(format!("a {} message cannot be retried", s.as_str())).into(),
                    );
                }
            }
        }
        MessagesCommand::Cancel { id, project } => match store.cancel_message(&project, &id).await?
        {
            StatusChange::Done => {
                crate::audit::record(
                    store.as_ref(),
                    &project,
                    &crate::audit::Actor::cli(),
                    "message.cancel",
                    Some(&id),
                    None,
                )
                .await;
                println!("Cancelled {id}.")
            }
            StatusChange::NotFound => return Err(not_found().into()),
            StatusChange::NotAllowed(s) => {
                return Err(
                    UsageError(format!("a {} message cannot be cancelled", s.as_str())).into(),
                );
            }
        },
    }
    Ok(())
}

async fn detail(
    store: &dyn Store,
    project: &str,
    id: &str,
    locale: Locale,
) -> anyhow::Result<Option<MessageView>> {
    let Some(row) = store.get_message(project, id).await? else {
        return Ok(None);
    };
    let mut view = MessageView::new(&row, locale);
    view.attempts = Some(
        store
            .message_attempts(id)
            .await?
            .into_iter()
            .map(crate::http::messages::AttemptView::from)
            .collect(),
    );
    view.events = Some(
        store
            .message_events(id)
            .await?
            .into_iter()
            .map(crate::http::messages::EventView::from)
            .collect(),
    );
    Ok(Some(view))
}

fn print_detail(v: &MessageView) {
    println!("{}  {}  type {}", v.id, v.status.as_str(), v.message_type);
    if let Some(s) = &v.subject {
        println!("  subject    {s}");
    }
    for r in &v.recipients {
        println!(
            "  {:<4} {:<30} {:<8} {}",
            r.kind,
            r.address,
            r.status,
            r.reply.clone().unwrap_or_default()
        );
    }
    if let Some(e) = &v.explanation {
        println!("  {e}");
    }
    for a in v.attempts.iter().flatten() {
        println!();
        println!(
            "  attempt {} via {} — {} in {} ms {}",
            a.at,
            a.account.clone().unwrap_or_else(|| "-".into()),
            a.outcome,
            a.duration_ms,
            a.diagnosis_code
                .clone()
                .map(|c| format!("({c})"))
                .unwrap_or_default()
        );
        if let Some(n) = &a.note {
            println!("    note: {n}");
        }
        for l in &a.transcript {
            println!("    {l}");
        }
    }
    println!();
    for e in v.events.iter().flatten() {
        println!(
            "  {} {:<9} {}",
            e.at,
            e.kind,
            e.detail.clone().unwrap_or_default()
        );
    }
}
