//! The `cartero` command line: `serve`, and offline administration on the data directory
//! (tokens, projects, accounts, presets, key rotation). Offline commands use the same
//! services as the API, against the same database, so a running server sees their changes
//! at once.

mod account;
mod send;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::{self, Application};
use crate::audit::{self, Actor};
use crate::config::{Config, LogFormat, Overrides};
use crate::domain::i18n::Locale;
use crate::domain::permission::Role;
use crate::domain::presets;
use crate::store::{DEFAULT_PROJECT, SYSTEM_PROJECT, StoreError};
use crate::tokens;

#[derive(Debug, Parser)]
#[command(
    name = "cartero",
    version,
    about = "Self-hosted outgoing mail: SMTP accounts, connection tests, durable delivery.",
    long_about = "cartero gives applications one place to configure, test and use outgoing mail (configurar SMTP, servidor de correo saliente).\n\nEvery command reads the same configuration as `serve`: flags, then CARTERO_* environment variables, then cartero.toml in the data directory."
)]
pub struct Cli {
    /// Data directory (SQLite database, master key). Env: CARTERO_DATA_DIR. Default: ./data
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Configuration file. Env: CARTERO_CONFIG. Default: DATA_DIR/cartero.toml if present.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database URL (sqlite://…). Env: CARTERO_DATABASE_URL.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process; boxing the large account variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API (default 127.0.0.1:8080).
    Serve {
        /// Listen address, IP:PORT. Env: CARTERO_LISTEN.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// API tokens: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Projects (tenants): every token and account belongs to one.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// SMTP accounts: add, list, show, update, enable, disable, remove.
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Provider presets (Gmail, Office 365, SendGrid, SES…); --email finds an address's provider.
    Presets {
        #[arg(long, value_name = "ADDR")]
        email: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Web admin users: add (prints a generated password once, or reads one from stdin),
    /// list, remove.
    #[command(subcommand)]
    User(UserCommand),
    /// Master key management.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Queue a message (or one per CSV row, with --csv); `cartero serve` delivers it.
    Send(send::SendArgs),
    /// The message log: list, show (attempts, transcripts, events), retry, cancel.
    #[command(subcommand)]
    Messages(send::MessagesCommand),
    /// Benchmark cartero against Postfix and raw SMTP on this machine (127.0.0.1 only).
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Messages per round.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Submissions in flight (HTTP keep-alive) and smtp-source sessions.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Rounds; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Fixed submission rate for the accept-latency measurement (0 to skip).
    #[arg(long, default_value_t = 1000)]
    rate: usize,
    /// Also measure with this many messages already queued (deferred).
    #[arg(long, default_value_t = 0)]
    queued: usize,
    /// Also measure draining this many due messages queued while no server ran (every one
    /// claimed from the queue, none handed over at acceptance).
    #[arg(long, default_value_t = 0)]
    backlog: usize,
    /// Skip the Postfix comparison.
    #[arg(long)]
    no_postfix: bool,
    /// Round trip (ms) between each sender and the sink, added by a relay that holds every
    /// chunk half of it each way, as a provider across the internet would (0: none).
    #[arg(long, default_value_t = 0)]
    rtt_ms: u64,
    /// 200 messages, one round, a 100 msgs/s latency check and a backlog of 200: proves the
    /// command works (CI).
    #[arg(long)]
    smoke: bool,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results.json")]
    out: PathBuf,
    /// The `cartero` binary to measure (default: this one), e.g. an earlier build to compare
    /// against in the same run.
    #[arg(long)]
    server: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it once (only its hash is stored).
    Create {
        #[arg(long)]
        name: String,
        /// owner (everything), admin (all but defaults.manage, users.manage), sender
        /// (messages.send), viewer (settings.view, messages.read).
        #[arg(long)]
        role: Role,
        #[arg(long, default_value = DEFAULT_PROJECT)]
        project: String,
    },
    /// List a project's tokens (never their text).
    List {
        #[arg(long, default_value = DEFAULT_PROJECT)]
        project: String,
    },
    /// Revoke a token by id; it stops working at once.
    Revoke {
        id: String,
        #[arg(long, default_value = DEFAULT_PROJECT)]
        project: String,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectCommand {
    /// Create a project: lowercase letters, digits and hyphens.
    Create {
        id: String,
    },
    List,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user who can log in to the web admin.
    Add {
        #[arg(long)]
        email: String,
        /// owner (everything, including users and the system fallback account), admin,
        /// sender, viewer (read-only).
        #[arg(long)]
        role: Role,
        #[arg(long, default_value = DEFAULT_PROJECT)]
        project: String,
        /// Read the password (at least 12 characters) from the first line of stdin instead of
        /// generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List a project's users.
    List {
        #[arg(long, default_value = DEFAULT_PROJECT)]
        project: String,
    },
    /// Remove a user by email; their sessions end at once.
    Remove {
        email: String,
        #[arg(long, default_value = DEFAULT_PROJECT)]
        project: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Re-encrypt every stored credential under a new master key, in one transaction.
    /// Run it with `cartero serve` stopped.
    Rotate,
}

/// The language of the person at the terminal, from LC_ALL / LC_MESSAGES / LANG.
pub fn terminal_locale() -> Locale {
    ["LC_ALL", "LC_MESSAGES", "LANG"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.is_empty())
        .and_then(|v| Locale::from_tag(&v))
        .unwrap_or_default()
}

/// Ends the command with this exit status, having already said everything.
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct Quiet(pub u8);

/// Errors the CLI explains and exits with status 2 for (bad input), rather than 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(Quiet(code)) = e.downcast_ref::<Quiet>() {
                ExitCode::from(*code)
            } else if let Some(usage) = e.downcast_ref::<UsageError>() {
                eprintln!("{usage}");
                ExitCode::from(2)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CARTERO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let listen = match &cli.command {
        Command::Serve { listen } => *listen,
        _ => None,
    };
    let config = Config::load(Overrides {
        config_file: cli.config,
        data_dir: cli.data_dir,
        listen,
        database_url: cli.database_url,
    })?;
    match cli.command {
        Command::Serve { .. } => {
            init_logging(config.log_format, "info,sqlx=warn");
            let app = Application::build(config).await?;
            app.run_until(app::shutdown_signal()).await
        }
        Command::Bench(args) => {
            init_logging(config.log_format, "warn");
            let opts = crate::bench::BenchOptions {
                messages: if args.smoke { 200 } else { args.messages },
                concurrency: args.concurrency,
                runs: if args.smoke { 1 } else { args.runs.max(1) },
                size: args.size,
                postfix: !args.no_postfix,
                rtt: std::time::Duration::from_millis(args.rtt_ms),
                queued: if args.smoke { 0 } else { args.queued },
                backlog: if args.smoke { 200 } else { args.backlog },
                rate: if args.smoke { 100 } else { args.rate },
                out: args.out,
                exe: match args.server {
                    Some(path) => path,
                    None => std::env::current_exe().context("locating the cartero binary")?,
                },
                repo: std::env::current_dir()?,
            };
            let summary = crate::bench::run(&opts).await?;
            println!("{}", crate::bench::table(&summary));
            eprintln!("JSON written to {}", opts.out.display());
            Ok(())
        }
        Command::Presets { email, json } => {
            let list: Vec<&presets::Preset> = match &email {
                Some(e) => presets::for_email(e),
                None => presets::all().iter().collect(),
            };
            print_presets(&list, json, email.as_deref())
        }
        command => {
            init_logging(config.log_format, "warn");
            let (store, keyring) = app::open_store(&config).await?;
            match command {
                Command::Token(c) => token_command(store.as_ref(), c).await,
                Command::Project(c) => project_command(store.as_ref(), c).await,
                Command::User(c) => user_command(store.clone(), c).await,
                Command::Account(c) => {
                    let accounts = crate::accounts::Accounts::new(store.clone(), keyring);
                    account::run(store.as_ref(), &accounts, c, &config).await
                }
                Command::Send(args) => send::send(store.clone(), &config, args).await,
                Command::Messages(c) => send::messages(store.clone(), &config, c).await,
                Command::Key(KeyCommand::Rotate) => {
                    let _lock = app::lock_data_dir(&config)?;
                    rotate_key(store.as_ref(), &keyring).await
                }
                Command::Serve { .. } | Command::Presets { .. } | Command::Bench(_) => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

async fn require_project(store: &dyn crate::store::Store, project: &str) -> anyhow::Result<()> {
    if project == SYSTEM_PROJECT || !store.project_exists(project).await? {
        return Err(UsageError(format!(
            "project `{project}` does not exist: create it with `cartero project create {project}`"
        ))
        .into());
    }
    Ok(())
}

async fn token_command(
    store: &dyn crate::store::Store,
    command: TokenCommand,
) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            name,
            role,
            project,
        } => {
            require_project(store, &project).await?;
            let name = name.trim();
            if name.is_empty() || name.len() > 100 {
                return Err(UsageError("--name must be 1–100 characters".into()).into());
            }
            let issued = tokens::issue(store, &project, name, role).await?;
            audit::record(
                store,
                &project,
                &Actor::cli(),
                "token.create",
                Some(name),
                Some(serde_json::json!({"role": role.as_str(), "id": issued.record.id})),
            )
            .await;
            eprintln!(
                "Created token {} (`{}`, role {}, project {}). It is shown only now; store it safely:",
                issued.record.id, issued.record.name, role, project
            );
            println!("{}", issued.token);
        }
        TokenCommand::List { project } => {
            require_project(store, &project).await?;
            let list = store.list_tokens(&project).await?;
            println!(
                "{:<38} {:<8} {:<9} {:<20} NAME",
                "ID", "ROLE", "STATE", "CREATED"
            );
            for t in list {
                println!(
                    "{:<38} {:<8} {:<9} {:<20} {}",
                    t.id,
                    t.role,
                    if t.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    },
                    t.created_at.date(),
                    t.name
                );
            }
        }
        TokenCommand::Revoke { id, project } => {
            if !store.revoke_token(&project, &id).await? {
                return Err(UsageError(format!(
                    "no active token `{id}` in project `{project}` (see `cartero token list`)"
                ))
                .into());
            }
            audit::record(
                store,
                &project,
                &Actor::cli(),
                "token.revoke",
                Some(&id),
                None,
            )
            .await;
            println!("Revoked token {id}.");
        }
    }
    Ok(())
}

async fn user_command(
    store: std::sync::Arc<dyn crate::store::Store>,
    command: UserCommand,
) -> anyhow::Result<()> {
    let locale = terminal_locale();
    match command {
        UserCommand::Add {
            email,
            role,
            project,
            password_stdin,
        } => {
            require_project(store.as_ref(), &project).await?;
            let generated = !password_stdin;
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_string()
            } else {
                crate::users::generate_password()
            };
            let users = crate::users::Users::new(store.clone());
            let user = match users.create(&project, &email, role, &password).await {
                Ok(user) => user,
                Err(crate::users::UserError::Invalid(fields)) => {
                    let lines: Vec<String> = fields
                        .iter()
                        .map(|f| format!("  {}: {}", f.field, f.message.get(locale)))
                        .collect();
                    return Err(UsageError(lines.join("\n")).into());
                }
                Err(crate::users::UserError::EmailTaken(e)) => {
                    return Err(UsageError(match locale {
                        Locale::Es => format!("Ya existe un usuario con el correo «{e}»."),
                        Locale::En => format!("A user with the email `{e}` already exists."),
                    })
                    .into());
                }
                Err(e) => return Err(e.into()),
            };
            audit::record(
                store.as_ref(),
                &project,
                &Actor::cli(),
                "user.create",
                Some(&user.email),
                Some(serde_json::json!({"role": role.as_str(), "password": "set"})),
            )
            .await;
            eprintln!(
                "{}",
                match locale {
                    Locale::Es => format!(
                        "Usuario {} creado (rol {role}, proyecto {project}). Inicie sesión en la página de cartero (por defecto http://127.0.0.1:8080/).",
                        user.email
                    ),
                    Locale::En => format!(
                        "Created user {} (role {role}, project {project}). Log in at cartero's page (by default http://127.0.0.1:8080/).",
                        user.email
                    ),
                }
            );
            if generated {
                eprintln!(
                    "{}",
                    match locale {
                        Locale::Es => "Contraseña generada; se muestra solo ahora:",
                        Locale::En => "Generated password; it is shown only now:",
                    }
                );
                println!("{password}");
            }
        }
        UserCommand::List { project } => {
            require_project(store.as_ref(), &project).await?;
            println!("{:<38} {:<8} {:<20} EMAIL", "ID", "ROLE", "CREATED");
            for u in store.list_users(&project).await? {
                println!(
                    "{:<38} {:<8} {:<20} {}",
                    u.id,
                    u.role,
                    u.created_at.date(),
                    u.email
                );
            }
        }
        UserCommand::Remove { email, project } => {
            let email = email.trim().to_lowercase();
            let user = store
                .user_by_email(&email)
                .await?
                .filter(|u| u.project_id == project);
            let removed = match &user {
                Some(u) => store.delete_user(&project, &u.id).await?,
                None => false,
            };
            if !removed {
                return Err(UsageError(format!(
                    "no user `{email}` in project `{project}` (see `cartero user list`)"
                ))
                .into());
            }
            audit::record(
                store.as_ref(),
                &project,
                &Actor::cli(),
                "user.delete",
                Some(&email),
                None,
            )
            .await;
            println!("Removed user {email}.");
        }
    }
    Ok(())
}

async fn project_command(
    store: &dyn crate::store::Store,
    command: ProjectCommand,
) -> anyhow::Result<()> {
    match command {
        ProjectCommand::Create { id } => {
            let valid = !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !id.starts_with('-');
            if !valid {
                return Err(UsageError(format!(
                    "project id `{id}` is not valid: use 1–64 lowercase letters, digits and hyphens"
                ))
                .into());
            }
            match store.create_project(&id).await {
                Ok(()) => {
                    audit::record(store, &id, &Actor::cli(), "project.create", Some(&id), None)
                        .await;
                    println!("Created project {id}.")
                }
                Err(StoreError::Conflict(_)) => {
                    return Err(UsageError(format!("project `{id}` already exists")).into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        ProjectCommand::List => {
            for p in store.list_projects().await? {
                println!("{p}");
            }
        }
    }
    Ok(())
}

async fn rotate_key(
    store: &dyn crate::store::Store,
    keyring: &crate::secrets::Keyring,
) -> anyhow::Result<()> {
    let mut next = keyring.rotated();
    // Save the new key (with the old ones still listed) before touching the database, so a
    // crash between the two steps leaves every secret openable.
    next.save().context("saving the new master key")?;
    let resealed = {
        let reseal = |aad: &str, sealed: &str| -> anyhow::Result<String> {
            let secret = next.open(aad, sealed)?;
            Ok(next.seal(aad, secret.expose()))
        };
        store.reseal_all(&reseal).await?
    };
    for project in store.list_projects().await? {
        audit::record(
            store,
            &project,
            &Actor::cli(),
            "key.rotate",
            Some(next.active_id()),
            Some(serde_json::json!({"resealed": resealed, "previous": keyring.active_id()})),
        )
        .await;
    }
    next.retire_old_keys();
    next.save()
        .context("removing the retired key from the key file")?;
    println!(
        "Re-encrypted {resealed} credential(s) under the new master key {} (was {}).",
        next.active_id(),
        keyring.active_id()
    );
    if *next.source() == crate::secrets::KeySource::Environment {
        println!(
            "The master key comes from CARTERO_MASTER_KEY: set it to the new key below before the next start, or the stored credentials cannot be opened."
        );
        println!("{}", next.active_key_base64());
    }
    Ok(())
}

fn print_presets(list: &[&presets::Preset], json: bool, email: Option<&str>) -> anyhow::Result<()> {
    let locale = terminal_locale();
    if json {
        let views: Vec<_> = list
            .iter()
            .map(|p| crate::http::views::PresetView::new(p, locale))
            .collect();
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    if list.is_empty() {
        if let Some(email) = email {
            println!(
                "{}",
                match locale {
                    Locale::Es => format!(
                        "No hay un preajuste para «{email}»: pida a su proveedor el servidor SMTP, el puerto y la encriptación."
                    ),
                    Locale::En => format!(
                        "No preset matches `{email}`: ask the provider for its SMTP server, port and security."
                    ),
                }
            );
        }
        return Ok(());
    }
    println!("{:<22} {:<34} {:<38} IMAP", "ID", "NAME", "SMTP");
    for p in list {
        let imap = p
            .imap
            .as_ref()
            .map(|i| format!("{}:{} {}", i.host, i.port, i.security.as_str()))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<22} {:<34} {:<38} {}",
            p.id,
            p.name,
            format!(
                "{}:{} {}",
                p.smtp.host,
                p.smtp.port,
                p.smtp.security.as_str()
            ),
            imap
        );
    }
    if let [only] = list {
        println!();
        println!(
            "{}",
            match locale {
                Locale::Es => only.note_es,
                Locale::En => only.note_en,
            }
        );
    }
    Ok(())
}
