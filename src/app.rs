//! [`Application`]: everything `cartero serve` runs, built from a [`Config`].
//!
//! `build` opens the store, loads the master key, checks that every stored secret can be
//! opened with it, and binds the listener (port 0 picks a free port, which tests use);
//! `run_until` serves HTTP and runs the delivery dispatcher until the given shutdown future
//! completes, then drains what is in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::accounts::{Accounts, EnvFallback};
use crate::config::Config;
use crate::delivery::Dispatcher;
use crate::delivery::intake::Intake;
use crate::delivery::transport::TransportSettings;
use crate::http::{self, AppState};
use crate::secrets::Keyring;
use crate::store::{self, Store};

/// The name of the lock file that keeps two servers (or a key rotation) off one data directory.
pub const LOCK_FILE: &str = "cartero.lock";

pub struct Application {
    listener: TcpListener,
    state: AppState,
    dispatcher: Arc<Dispatcher>,
    _lock: std::fs::File,
}

/// The process-wide Prometheus recorder (installed once, shared by every application).
pub fn metrics_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .expect("valid buckets")
                .build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Opens the store and the keyring of a configuration: shared by `serve` and the CLI.
pub async fn open_store(config: &Config) -> anyhow::Result<(Arc<dyn Store>, Arc<Keyring>)> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let store = store::open(&config.database_url)
        .await
        .with_context(|| format!("opening the database {}", redact_url(&config.database_url)))?;
    let sealed_with = store.sealed_key_ids().await?;
    let keyring = Keyring::load(
        config.master_key.as_ref().map(|s| s.expose()),
        &config.data_dir,
        sealed_with.is_empty(),
    )?;
    let missing: Vec<String> = sealed_with
        .into_iter()
        .filter(|id| !keyring.knows(id))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "the database holds credentials encrypted with master key(s) {} which are not loaded (loaded: {}). Restore the key file {} or set CARTERO_MASTER_KEY to the key that was in use.",
            missing.join(", "),
            keyring.active_id(),
            config.data_dir.join(crate::secrets::KEY_FILE).display()
        );
    }
    Ok((store, Arc::new(keyring)))
}

/// The connection-test settings of a configuration (loads the TLS trust store).
pub fn probe_settings(config: &Config) -> anyhow::Result<crate::probe::ProbeSettings> {
    let n = &config.network;
    Ok(crate::probe::ProbeSettings {
        timeouts: crate::smtp::Timeouts {
            connect: n.connect_timeout,
            reply: n.reply_timeout,
        },
        total: n.test_timeout,
        deny_private_destinations: n.deny_private_destinations,
        trust: crate::tls::TlsTrust::system(n.tls_ca_file.as_deref())?,
        helo_name: n.helo_name.clone(),
    })
}

/// Takes the data directory's lock, or explains who holds it.
pub fn lock_data_dir(config: &Config) -> anyhow::Result<std::fs::File> {
    let path = config.data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another cartero process is using the data directory {} (lock {}): stop it first",
            config.data_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
        // One server per data directory: its key file and SQLite database are not shared.
        let lock = lock_data_dir(&config)?;
        let (store, keyring) = open_store(&config).await?;
        let env_fallback = match &config.fallback_smtp_url {
            Some(url) => Some(Arc::new(EnvFallback::parse(url.expose())?)),
            None => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let accounts = Accounts::new(store.clone(), keyring);
        let probe = Arc::new(probe_settings(&config)?);
        let returned = store.release_leases().await?;
        if returned > 0 {
            tracing::warn!(
                messages = returned,
                "messages claimed by a previous run went back to the queue"
            );
        }
        let wake = Arc::new(tokio::sync::Notify::new());
        let dispatcher = Dispatcher::new(
            store.clone(),
            accounts.clone(),
            env_fallback.clone(),
            config.delivery.clone(),
            TransportSettings {
                connections_per_account: config.delivery.connections_per_account,
                timeouts: probe.timeouts,
                trust: probe.trust.clone(),
                helo_name: probe.helo_name.clone(),
                deny_private_destinations: probe.deny_private_destinations,
            },
            wake.clone(),
        );
        let intake = Intake::new(
            store.clone(),
            wake,
            config.delivery.max_message_bytes,
            config.delivery.max_lifetime,
            Some(dispatcher.handoff()),
        );
        let test_limiter = Arc::new(http::TestLimiter::new(config.network.tests_per_minute));
        let users = crate::users::Users::new(store.clone());
        if store.count_users().await? == 0 {
            tracing::info!(
                "no web admin users yet: create the owner with `cartero user add --email you@example.com --role owner` (it prints a password once), then log in at http://{}/",
                listener.local_addr()?
            );
        }
        Ok(Application {
            listener,
            state: AppState::new(http::AppParts {
                config: Arc::new(config),
                store,
                accounts,
                env_fallback,
                probe,
                test_limiter,
                login_throttle: Arc::new(http::LoginThrottle::default()),
                users,
                intake,
                metrics: metrics_handle(),
            }),
            dispatcher,
            _lock: lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes: then stops accepting requests, finishes the ones
    /// in flight, and lets the dispatcher finish (and record) the deliveries in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let router = http::router(self.state.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let dispatcher = tokio::spawn(self.dispatcher.clone().run(stop_rx));
        tracing::info!(address = %self.local_addr(), "cartero is listening");
        let served = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP");
        let _ = stop_tx.send(true);
        let _ = dispatcher.await;
        tracing::info!("cartero stopped");
        served
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // A process started with SIGINT ignored (a background job of a non-interactive
        // shell) may not get Ctrl-C at all: then only SIGTERM stops it, never an error.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

/// A database URL fit for a log line: the password, if any, replaced.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
