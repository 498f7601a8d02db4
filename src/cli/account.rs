//! `cartero account …`: the account service from the terminal.
//!
//! Flags build the same [`AccountInput`] the API takes (or `--json FILE` supplies it whole),
//! so validation, defaults and messages are the API's. A password is read from standard input
//! (`--password-stdin`), never from an argument that `ps` would show.

use crate::audit::{self, Actor};
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{UsageError, require_project, terminal_locale};
use crate::accounts::{AccountError, Accounts, TestTarget};
use crate::domain::account::{AccountInput, EmailAddress, ImapInput, LimitsInput};
use crate::http::views::{AccountView, TestView};
use crate::store::{AccountRecord, DEFAULT_PROJECT, Store};

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Add an account, from flags or a JSON file (the API's shape; `-` reads stdin).
    Add {
        #[command(flatten)]
        fields: AccountFlags,
        #[command(flatten)]
        common: Common,
    },
    /// List the project's accounts, highest priority first.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Show one account (never its password).
    Show {
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Change the fields given; the others keep their value.
    Update {
        id: String,
        #[command(flatten)]
        fields: AccountFlags,
        #[command(flatten)]
        common: Common,
    },
    /// Enable an account: it takes part in routing again.
    Enable {
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Disable an account: it is skipped by routing until enabled.
    Disable {
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Probar / Test: check DNS, TCP, TLS, EHLO, STARTTLS, AUTH, MAIL FROM, RCPT TO, send a
    /// test email (unless --no-send), then IMAP; explain any failure. Exit status 1 if it fails.
    Test {
        id: String,
        /// Recipient of the test email (default: the account's own address).
        #[arg(long, value_name = "ADDR")]
        to: Option<String>,
        /// Stop after RCPT TO; send nothing.
        #[arg(long)]
        no_send: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Remove an account.
    Remove {
        id: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Args)]
pub struct Common {
    #[arg(long, default_value = DEFAULT_PROJECT)]
    project: String,
    /// Print JSON (the API's answer) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args, Default)]
pub struct AccountFlags {
    /// Read the whole account from a JSON file (`-` for stdin); flags given too override it.
    #[arg(long = "from-json", value_name = "FILE")]
    from_json: Option<PathBuf>,
    /// Provider preset id (see `cartero presets`).
    #[arg(long)]
    preset: Option<String>,
    #[arg(long)]
    name: Option<String>,
    /// Purpose of the account: system, billing, marketing…
    #[arg(long = "type")]
    account_type: Option<String>,
    /// Higher is tried first.
    #[arg(long, allow_hyphen_values = true)]
    priority: Option<i64>,
    #[arg(long)]
    host: Option<String>,
    #[arg(long)]
    port: Option<i64>,
    /// none, starttls or tls (SSL/TLS).
    #[arg(long)]
    security: Option<String>,
    /// none, password or xoauth2.
    #[arg(long)]
    auth: Option<String>,
    #[arg(long)]
    username: Option<String>,
    /// Read the SMTP password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    #[arg(long)]
    from_email: Option<String>,
    #[arg(long)]
    from_name: Option<String>,
    #[arg(long)]
    reply_to: Option<String>,
    /// Microsoft / Office 365 compatibility (true or false).
    #[arg(long)]
    microsoft365: Option<bool>,
    /// Verify the server's TLS certificate (true or false; default true).
    #[arg(long)]
    tls_verify: Option<bool>,
    /// Pin the server certificate's SHA-256 fingerprint (shown by `account test`).
    #[arg(long, value_name = "SHA256")]
    tls_fingerprint: Option<String>,
    #[arg(long)]
    enabled: Option<bool>,
    #[arg(long, value_name = "N")]
    per_minute: Option<i64>,
    #[arg(long, value_name = "N")]
    per_hour: Option<i64>,
    #[arg(long, value_name = "N")]
    per_day: Option<i64>,
    #[arg(long)]
    imap_host: Option<String>,
    #[arg(long)]
    imap_port: Option<i64>,
    #[arg(long)]
    imap_security: Option<String>,
    #[arg(long)]
    imap_folder: Option<String>,
}

impl AccountFlags {
    fn into_input(self) -> anyhow::Result<AccountInput> {
        let mut input = match &self.from_json {
            None => AccountInput::default(),
            Some(path) => {
                let text = if path.as_os_str() == "-" {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s
                } else {
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?
                };
                serde_json::from_str(&text).map_err(|e| {
                    UsageError(format!("{}: not a valid account JSON: {e}", path.display()))
                })?
            }
        };
        let patch = AccountInput {
            preset: self.preset,
            name: self.name,
            account_type: self.account_type,
            priority: self.priority,
            enabled: self.enabled,
            host: self.host,
            port: self.port,
            security: self.security,
            auth: self.auth,
            username: self.username.map(Some),
            password: None,
            from_email: self.from_email,
            from_name: self.from_name.map(Some),
            reply_to: self.reply_to.map(Some),
            microsoft365: self.microsoft365,
            tls_verify: self.tls_verify,
            tls_fingerprint: self.tls_fingerprint.map(Some),
            limits: (self.per_minute.is_some()
                || self.per_hour.is_some()
                || self.per_day.is_some())
            .then_some(LimitsInput {
                per_minute: self.per_minute.map(Some),
                per_hour: self.per_hour.map(Some),
                per_day: self.per_day.map(Some),
            }),
            imap: (self.imap_host.is_some()
                || self.imap_port.is_some()
                || self.imap_security.is_some()
                || self.imap_folder.is_some())
            .then_some(Some(ImapInput {
                host: self.imap_host,
                port: self.imap_port,
                security: self.imap_security,
                folder: self.imap_folder,
                ..ImapInput::default()
            })),
        };
        input = input.overlay(patch);
        if self.password_stdin {
            if self
                .from_json
                .as_deref()
                .is_some_and(|p| p.as_os_str() == "-")
            {
                return Err(UsageError(
                    "--password-stdin cannot be combined with --from-json - (both read stdin): put the password in the JSON".into(),
                )
                .into());
            }
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']).to_string();
            if password.is_empty() {
                return Err(UsageError("--password-stdin read an empty password".into()).into());
            }
            input.password = Some(Some(password));
        }
        Ok(input)
    }
}

pub async fn run(
    store: &dyn Store,
    accounts: &Accounts,
    command: AccountCommand,
    config: &crate::config::Config,
) -> anyhow::Result<()> {
    match command {
        AccountCommand::Add { fields, common } => {
            require_project(store, &common.project).await?;
            let input = fields.into_input()?;
            let record = accounts
                .create(&common.project, &input)
                .await
                .map_err(explain)?;
            audit::account(store, &Actor::cli(), "account.create", None, &record).await;
            print_account(&record, common.json, "Created")?;
        }
        AccountCommand::List { common } => {
            require_project(store, &common.project).await?;
            let list = accounts.list(&common.project).await.map_err(explain)?;
            if common.json {
                let views: Vec<AccountView> = list.iter().map(AccountView::from).collect();
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                println!(
                    "{:<38} {:<20} {:<10} {:>5} {:<8} {:<36} FROM",
                    "ID", "NAME", "TYPE", "PRIO", "STATE", "SERVER"
                );
                for a in &list {
                    let s = &a.spec;
                    println!(
                        "{:<38} {:<20} {:<10} {:>5} {:<8} {:<36} {}",
                        a.id,
                        s.name,
                        s.account_type.as_str(),
                        s.priority,
                        if s.enabled { "enabled" } else { "disabled" },
                        format!("{}:{} {}", s.host, s.port.get(), s.security.as_str()),
                        s.from_email
                    );
                }
            }
        }
        AccountCommand::Show { id, common } => {
            let record = accounts.get(&common.project, &id).await.map_err(explain)?;
            print_account(&record, common.json, "Account")?;
        }
        AccountCommand::Update { id, fields, common } => {
            let patch = fields.into_input()?;
            let before = accounts.get(&common.project, &id).await.map_err(explain)?;
            let record = accounts
                .update(&common.project, &id, patch)
                .await
                .map_err(explain)?;
            audit::account(
                store,
                &Actor::cli(),
                "account.update",
                Some(&before),
                &record,
            )
            .await;
            print_account(&record, common.json, "Updated")?;
        }
        AccountCommand::Enable { id, common } => {
            set_enabled(store, accounts, &id, &common, true).await?;
        }
        AccountCommand::Disable { id, common } => {
            set_enabled(store, accounts, &id, &common, false).await?;
        }
        AccountCommand::Test {
            id,
            to,
            no_send,
            common,
        } => {
            let send_to = match to {
                Some(t) => Some(EmailAddress::parse("--to", &t).map_err(|e| {
                    UsageError(format!("--to: {}", e.message.get(terminal_locale())))
                })?),
                None => None,
            };
            let record = accounts.get(&common.project, &id).await.map_err(explain)?;
            let settings = crate::app::probe_settings(config)?;
            let locale = terminal_locale();
            if !common.json {
                eprintln!(
                    "{} {} ({}:{} {})…",
                    match locale {
                        crate::domain::i18n::Locale::Es => "Probando la cuenta",
                        crate::domain::i18n::Locale::En => "Testing account",
                    },
                    record.spec.name,
                    record.spec.host,
                    record.spec.port.get(),
                    record.spec.security.as_str()
                );
            }
            let report = accounts
                .test_saved(
                    &common.project,
                    &id,
                    None,
                    TestTarget {
                        send_to,
                        send: !no_send,
                    },
                    &settings,
                    None,
                )
                .await
                .map_err(explain)?;
            if common.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&TestView::new(&report, locale))?
                );
            } else {
                print_test(&TestView::new(&report, locale), locale);
            }
            if !report.ok {
                return Err(super::Quiet(1).into());
            }
        }
        AccountCommand::Remove { id, common } => {
            let before = accounts.get(&common.project, &id).await.map_err(explain)?;
            accounts
                .delete(&common.project, &id)
                .await
                .map_err(explain)?;
            audit::record(
                store,
                &common.project,
                &Actor::cli(),
                "account.delete",
                Some(&id),
                Some(serde_json::json!({"name": before.spec.name})),
            )
            .await;
            println!("Removed account {id}.");
        }
    }
    Ok(())
}

async fn set_enabled(
    store: &dyn Store,
    accounts: &Accounts,
    id: &str,
    common: &Common,
    enabled: bool,
) -> anyhow::Result<()> {
    let before = accounts.get(&common.project, id).await.map_err(explain)?;
    let record = accounts
        .set_enabled(&common.project, id, enabled)
        .await
        .map_err(explain)?;
    audit::account(
        store,
        &Actor::cli(),
        "account.update",
        Some(&before),
        &record,
    )
    .await;
    print_account(
        &record,
        common.json,
        if enabled { "Enabled" } else { "Disabled" },
    )
}

/// Turns a service error into a message for the terminal, in its language.
fn explain(e: AccountError) -> anyhow::Error {
    let locale = terminal_locale();
    match e {
        AccountError::Invalid(fields) => {
            let lines: Vec<String> = fields
                .iter()
                .map(|f| format!("  {}: {}", f.field, f.message.get(locale)))
                .collect();
            let head = match locale {
                crate::domain::i18n::Locale::Es => "La cuenta no es válida:",
                crate::domain::i18n::Locale::En => "The account is not valid:",
            };
            UsageError(format!("{head}\n{}", lines.join("\n"))).into()
        }
        AccountError::NotFound => UsageError(match locale {
            crate::domain::i18n::Locale::Es => {
                "No existe esa cuenta en este proyecto (vea `cartero account list`).".into()
            }
            crate::domain::i18n::Locale::En => {
                "No such account in this project (see `cartero account list`).".into()
            }
        })
        .into(),
        AccountError::NameTaken(name) => UsageError(match locale {
            crate::domain::i18n::Locale::Es => {
                format!(
                    "Ya existe una cuenta llamada «{name}» en este proyecto: elija otro nombre."
                )
            }
            crate::domain::i18n::Locale::En => {
                format!(
                    "An account named `{name}` already exists in this project: choose another name."
                )
            }
        })
        .into(),
        other => other.into(),
    }
}

fn print_test(view: &TestView, locale: crate::domain::i18n::Locale) {
    let es = locale == crate::domain::i18n::Locale::Es;
    for stage in &view.stages {
        println!(
            "  {} {:<10} {:>6} ms  {}",
            if stage.ok { "✔" } else { "✘" },
            stage.name,
            stage.ms,
            stage.detail.as_deref().unwrap_or("")
        );
    }
    println!();
    println!("{}", view.message);
    if let Some(d) = &view.diagnosis {
        println!("  {}: {}", if es { "Código" } else { "Code" }, d.code);
        println!("  {}: {}", if es { "Solución" } else { "Fix" }, d.fix);
    }
    if let Some(c) = &view.certificate {
        println!(
            "  {}: {} ({} {}), SHA-256 {}",
            if es { "Certificado" } else { "Certificate" },
            c.subject,
            if es { "válido hasta" } else { "valid until" },
            c.not_after,
            c.sha256
        );
    }
    for w in &view.warnings {
        println!("  ! {w}");
    }
    if !view.transcript.is_empty() {
        println!();
        println!("{}:", if es { "Transcripción" } else { "Transcript" });
        for line in &view.transcript {
            println!("  {line}");
        }
    }
}

fn print_account(record: &AccountRecord, json: bool, verb: &str) -> anyhow::Result<()> {
    let view = AccountView::from(record);
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    let s = &record.spec;
    println!("{verb} account {}", record.id);
    let line = |k: &str, v: String| println!("  {k:<14} {v}");
    line("name", s.name.clone());
    line("type", s.account_type.as_str().to_string());
    line("priority", s.priority.to_string());
    line("enabled", s.enabled.to_string());
    line(
        "server",
        format!("{}:{} ({})", s.host, s.port.get(), s.security.as_str()),
    );
    line("auth", s.auth.as_str().to_string());
    line("username", s.username.clone().unwrap_or_else(|| "-".into()));
    line(
        "password",
        if view.password_set {
            "set".into()
        } else {
            "not set".into()
        },
    );
    line(
        "from",
        match &s.from_name {
            Some(n) => format!("{n} <{}>", s.from_email),
            None => s.from_email.to_string(),
        },
    );
    line(
        "reply_to",
        s.reply_to
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "-".into()),
    );
    line("microsoft365", s.microsoft365.to_string());
    line("tls_verify", s.tls_verify.to_string());
    let limit = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    line(
        "limits",
        format!(
            "{}/minute {}/hour {}/day",
            limit(s.limits.per_minute),
            limit(s.limits.per_hour),
            limit(s.limits.per_day)
        ),
    );
    line(
        "imap",
        s.imap
            .as_ref()
            .map(|i| {
                format!(
                    "{}:{} ({}) folder {}",
                    i.host,
                    i.port.get(),
                    i.security.as_str(),
                    i.folder
                )
            })
            .unwrap_or_else(|| "-".into()),
    );
    Ok(())
}
