//! Layered configuration: built-in defaults ← `cartero.toml` ← `CARTERO_*` environment ←
//! command-line flags. Each layer only overrides what it names.
//!
//! The file is `--config FILE` (or `CARTERO_CONFIG`) when given, else `cartero.toml` in the
//! data directory when it exists. The environment is passed in as a function so that tests
//! control it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::domain::i18n::Locale;
use crate::secrets::Secret;

/// The settings a running cartero needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the SQLite database and the master key file live.
    pub data_dir: PathBuf,
    /// The HTTP listen address (default 127.0.0.1:8080).
    pub listen: SocketAddr,
    /// `sqlite://…` (default: `cartero.db` in the data directory) or `postgres://…`.
    pub database_url: String,
    /// `CARTERO_MASTER_KEY`: base64 master key(s); when absent the key file is used.
    pub master_key: Option<Secret>,
    /// `CARTERO_FALLBACK_SMTP_URL`: the operator's system fallback account.
    pub fallback_smtp_url: Option<Secret>,
    /// `text` (default) or `json` log lines.
    pub log_format: LogFormat,
    /// Language of answers when the client names none (default `en`).
    pub default_locale: Locale,
    /// Largest accepted JSON request body, in bytes (default 256 KiB).
    pub max_body_bytes: usize,
    /// Outgoing connections (connection tests, delivery).
    pub network: NetworkConfig,
    /// The queue: retries, lifetime, concurrency, limits.
    pub delivery: crate::delivery::DeliverySettings,
}

/// How cartero connects to mail servers.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Refuse loopback, private, link-local and metadata destinations after DNS resolution
    /// (`network.deny_private_destinations`, `CARTERO_DENY_PRIVATE_DESTINATIONS`). Off by
    /// default: self-hosting often means a relay or ProtonMail Bridge on 127.0.0.1.
    pub deny_private_destinations: bool,
    /// Extra CA bundle (PEM) trusted besides the system store (`CARTERO_TLS_CA_FILE`).
    pub tls_ca_file: Option<PathBuf>,
    /// TCP connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// Timeout for each server reply (default 30 s).
    pub reply_timeout: Duration,
    /// Bound on a whole connection test (default 90 s).
    pub test_timeout: Duration,
    /// Connection tests allowed per project and minute (default 10).
    pub tests_per_minute: u32,
    /// The name cartero gives in EHLO (default `localhost`).
    pub helo_name: String,
    /// Mark the web session cookie `Secure` (default true; browsers accept it on
    /// http://127.0.0.1 and over HTTPS). Turn off only to reach the admin over plain HTTP on
    /// another address (`CARTERO_SECURE_COOKIES=false`).
    pub secure_cookies: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            deny_private_destinations: false,
            tls_ca_file: None,
            connect_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(30),
            test_timeout: Duration::from_secs(90),
            tests_per_minute: 10,
            helo_name: "localhost".into(),
            secure_cookies: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// What the command line may override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub database_url: Option<String>,
}

/// The keys `cartero.toml` may hold (all optional; unknown keys are an error).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    database_url: Option<String>,
    fallback_smtp_url: Option<String>,
    log_format: Option<String>,
    default_locale: Option<String>,
    max_body_bytes: Option<usize>,
    #[serde(default)]
    network: NetworkFile,
    #[serde(default)]
    delivery: DeliveryFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryFile {
    retry_base_secs: Option<u64>,
    queue_lifetime_secs: Option<u64>,
    connections_per_account: Option<u64>,
    max_in_flight: Option<u64>,
    throttle_cooldown_secs: Option<u64>,
    no_account_retry_secs: Option<u64>,
    max_message_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFile {
    deny_private_destinations: Option<bool>,
    tls_ca_file: Option<PathBuf>,
    connect_timeout_secs: Option<u64>,
    reply_timeout_secs: Option<u64>,
    test_timeout_secs: Option<u64>,
    tests_per_minute: Option<u32>,
    helo_name: Option<String>,
    secure_cookies: Option<bool>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "data";
pub const CONFIG_FILE: &str = "cartero.toml";

impl Config {
    /// Loads the configuration from the real process environment.
    pub fn load(overrides: Overrides) -> anyhow::Result<Config> {
        Config::load_with(overrides, &|name| std::env::var(name).ok())
    }

    /// Loads the configuration with `env` standing in for the process environment.
    pub fn load_with(
        overrides: Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());

        // The data directory decides where the default config file is, so resolve it first
        // from the layers that do not depend on the file.
        let explicit_file = overrides
            .config_file
            .clone()
            .or_else(|| env("CARTERO_CONFIG").map(PathBuf::from));
        let early_data_dir = overrides
            .data_dir
            .clone()
            .or_else(|| env("CARTERO_DATA_DIR").map(PathBuf::from));

        let file = match &explicit_file {
            Some(path) => read_file(path)?,
            None => {
                let dir = early_data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
                let path = dir.join(CONFIG_FILE);
                if path.exists() {
                    read_file(&path)?
                } else {
                    FileConfig::default()
                }
            }
        };

        let data_dir = early_data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

        let listen_text = env("CARTERO_LISTEN")
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = match overrides.listen {
            Some(l) => l,
            None => listen_text.parse().with_context(|| {
                format!("listen address `{listen_text}` is not IP:PORT (e.g. 127.0.0.1:8080)")
            })?,
        };

        let database_url = overrides
            .database_url
            .or_else(|| env("CARTERO_DATABASE_URL"))
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("cartero.db").display()));

        let log_format = match env("CARTERO_LOG_FORMAT")
            .or(file.log_format)
            .as_deref()
            .unwrap_or("text")
        {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("log format `{other}` is unknown: use `text` or `json`"),
        };

        let default_locale = match env("CARTERO_DEFAULT_LOCALE").or(file.default_locale) {
            None => Locale::En,
            Some(tag) => Locale::from_tag(&tag)
                .with_context(|| format!("default locale `{tag}` is unknown: use `es` or `en`"))?,
        };

        let max_body_bytes = match env("CARTERO_MAX_BODY_BYTES") {
            Some(v) => v
                .parse()
                .with_context(|| format!("CARTERO_MAX_BODY_BYTES `{v}` is not a number"))?,
            None => file.max_body_bytes.unwrap_or(256 * 1024),
        };

        let parse_env = |name: &str| -> anyhow::Result<Option<u64>> {
            env(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .with_context(|| format!("{name} `{v}` is not a whole number"))
                })
                .transpose()
        };
        let defaults = NetworkConfig::default();
        let secs =
            |env_name: &str, file: Option<u64>, default: Duration| -> anyhow::Result<Duration> {
                Ok(parse_env(env_name)?
                    .or(file)
                    .map(Duration::from_secs)
                    .unwrap_or(default))
            };
        let flag = |env_name: &str, file: Option<bool>, default: bool| -> anyhow::Result<bool> {
            match env(env_name) {
                Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Ok(true),
                    "0" | "false" | "no" | "off" => Ok(false),
                    _ => bail!("{env_name} `{v}` must be true or false"),
                },
                None => Ok(file.unwrap_or(default)),
            }
        };
        let deny_private_destinations = flag(
            "CARTERO_DENY_PRIVATE_DESTINATIONS",
            file.network.deny_private_destinations,
            defaults.deny_private_destinations,
        )?;
        let network = NetworkConfig {
            deny_private_destinations,
            tls_ca_file: env("CARTERO_TLS_CA_FILE")
                .map(PathBuf::from)
                .or(file.network.tls_ca_file),
            connect_timeout: secs(
                "CARTERO_CONNECT_TIMEOUT_SECS",
                file.network.connect_timeout_secs,
                defaults.connect_timeout,
            )?,
            reply_timeout: secs(
                "CARTERO_REPLY_TIMEOUT_SECS",
                file.network.reply_timeout_secs,
                defaults.reply_timeout,
            )?,
            test_timeout: secs(
                "CARTERO_TEST_TIMEOUT_SECS",
                file.network.test_timeout_secs,
                defaults.test_timeout,
            )?,
            tests_per_minute: parse_env("CARTERO_TESTS_PER_MINUTE")?
                .map(|v| v as u32)
                .or(file.network.tests_per_minute)
                .unwrap_or(defaults.tests_per_minute)
                .max(1),
            helo_name: env("CARTERO_HELO_NAME")
                .or(file.network.helo_name)
                .unwrap_or(defaults.helo_name),
            secure_cookies: flag(
                "CARTERO_SECURE_COOKIES",
                file.network.secure_cookies,
                defaults.secure_cookies,
            )?,
        };

        let d = crate::delivery::DeliverySettings::default();
        let count = |name: &str, file: Option<u64>, default: usize| -> anyhow::Result<usize> {
            Ok(parse_env(name)?
                .or(file)
                .map(|v| v as usize)
                .unwrap_or(default)
                .max(1))
        };
        let delivery = crate::delivery::DeliverySettings {
            retry_base: secs(
                "CARTERO_RETRY_BASE_SECS",
                file.delivery.retry_base_secs,
                d.retry_base,
            )?,
            max_lifetime: secs(
                "CARTERO_QUEUE_LIFETIME_SECS",
                file.delivery.queue_lifetime_secs,
                d.max_lifetime,
            )?,
            connections_per_account: count(
                "CARTERO_CONNECTIONS_PER_ACCOUNT",
                file.delivery.connections_per_account,
                d.connections_per_account,
            )?,
            max_in_flight: count(
                "CARTERO_MAX_IN_FLIGHT",
                file.delivery.max_in_flight,
                d.max_in_flight,
            )?,
            throttle_cooldown: secs(
                "CARTERO_THROTTLE_COOLDOWN_SECS",
                file.delivery.throttle_cooldown_secs,
                d.throttle_cooldown,
            )?,
            no_account_retry: secs(
                "CARTERO_NO_ACCOUNT_RETRY_SECS",
                file.delivery.no_account_retry_secs,
                d.no_account_retry,
            )?,
            max_message_bytes: count(
                "CARTERO_MAX_MESSAGE_BYTES",
                file.delivery.max_message_bytes,
                d.max_message_bytes,
            )?,
            ..d
        };

        Ok(Config {
            data_dir,
            listen,
            database_url,
            master_key: env("CARTERO_MASTER_KEY").map(Secret::new),
            fallback_smtp_url: env("CARTERO_FALLBACK_SMTP_URL")
                .or(file.fallback_smtp_url)
                .map(Secret::new),
            log_format,
            default_locale,
            max_body_bytes,
            network,
            delivery,
        })
    }

    /// A configuration for tests and embedding: everything in `data_dir`, listening on an
    /// ephemeral port of 127.0.0.1.
    pub fn for_data_dir(data_dir: &Path) -> Config {
        Config {
            data_dir: data_dir.to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("valid address"),
            database_url: format!("sqlite://{}", data_dir.join("cartero.db").display()),
            master_key: None,
            fallback_smtp_url: None,
            log_format: LogFormat::Text,
            default_locale: Locale::En,
            max_body_bytes: 256 * 1024,
            network: NetworkConfig::default(),
            delivery: crate::delivery::DeliverySettings::default(),
        }
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("in the configuration file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_then_file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "listen = \"127.0.0.1:9000\"\nlog_format = \"json\"\ndefault_locale = \"es\"\n",
        )
        .unwrap();
        let data = dir.path().to_str().unwrap();

        let only_file =
            Config::load_with(Overrides::default(), &env_of(&[("CARTERO_DATA_DIR", data)]))
                .unwrap();
        assert_eq!(only_file.listen.port(), 9000);
        assert_eq!(only_file.log_format, LogFormat::Json);
        assert_eq!(only_file.default_locale, Locale::Es);
        assert!(only_file.database_url.starts_with("sqlite://"));

        let env_wins = Config::load_with(
            Overrides::default(),
            &env_of(&[
                ("CARTERO_DATA_DIR", data),
                ("CARTERO_LISTEN", "127.0.0.1:9100"),
            ]),
        )
        .unwrap();
        assert_eq!(env_wins.listen.port(), 9100);

        let flag_wins = Config::load_with(
            Overrides {
                listen: Some("127.0.0.1:9200".parse().unwrap()),
                ..Overrides::default()
            },
            &env_of(&[
                ("CARTERO_DATA_DIR", data),
                ("CARTERO_LISTEN", "127.0.0.1:9100"),
            ]),
        )
        .unwrap();
        assert_eq!(flag_wins.listen.port(), 9200);
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::load_with(
            Overrides::default(),
            &env_of(&[("CARTERO_LISTEN", "localhost")]),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("localhost"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "lisen = \"x\"\n").unwrap();
        let err = Config::load_with(
            Overrides {
                data_dir: Some(dir.path().to_path_buf()),
                ..Overrides::default()
            },
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("lisen"));
    }
}
