//! The HTTP interface: the `/v1` JSON API, `/healthz`, the OpenAPI document and the web
//! admin at `/`.
//!
//! Every route authenticates a [`auth::Caller`] and requires one permission; errors are
//! [`error::ApiError`]s rendered in the caller's language by the [`error::localize`]
//! middleware. Handlers are thin: they call the same services the CLI uses.

pub mod admin;
pub mod auth;
pub mod error;
pub mod json;
pub mod messages;
mod routes;
pub mod ui;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use tower_http::trace::TraceLayer;

use crate::accounts::{Accounts, EnvFallback};
use crate::config::Config;
use crate::probe::ProbeSettings;
use crate::store::Store;

/// What every handler can reach: one shared [`AppParts`], so the clone each extractor makes
/// is one reference count (a dozen of them, per request, showed in the profile).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    pub fn new(parts: AppParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

pub struct AppParts {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub accounts: Accounts,
    /// The fallback account from `CARTERO_FALLBACK_SMTP_URL`, if the operator set one.
    pub env_fallback: Option<Arc<EnvFallback>>,
    /// Connection-test settings (timeouts, trust store, destination policy).
    pub probe: Arc<ProbeSettings>,
    /// Connection tests allowed per project and minute.
    pub test_limiter: Arc<TestLimiter>,
    /// Failed logins per email.
    pub login_throttle: Arc<LoginThrottle>,
    /// Web admin users and sessions.
    pub users: crate::users::Users,
    /// Where accepted messages go (group commit).
    pub intake: crate::delivery::intake::Intake,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// Limits password guessing. Every attempt counts as a failure from the moment it starts (so
/// parallel requests cannot slip past the limit while a password is being verified) and a
/// successful login clears its email's count. Per email: [`LoginThrottle::PER_EMAIL`] attempts
/// within [`LoginThrottle::WINDOW`]; per client address: [`LoginThrottle::PER_ADDRESS`] (one
/// address trying many emails).
#[derive(Default)]
pub struct LoginThrottle {
    attempts: std::sync::Mutex<std::collections::HashMap<String, Vec<std::time::Instant>>>,
}

impl LoginThrottle {
    pub const PER_EMAIL: usize = 5;
    pub const PER_ADDRESS: usize = 30;
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(15 * 60);

    /// Counts an attempt for `email` from `address`; `Err(seconds to wait)` when either is
    /// over its limit (the attempt is then not counted).
    pub fn begin(&self, email: &str, address: &str) -> Result<(), u64> {
        let now = std::time::Instant::now();
        let mut map = self.attempts.lock().expect("not poisoned");
        if map.len() > 100_000 {
            map.retain(|_, list| list.iter().any(|t| now.duration_since(*t) < Self::WINDOW));
        }
        let keys = [
            (format!("email:{email}"), Self::PER_EMAIL),
            (format!("address:{address}"), Self::PER_ADDRESS),
        ];
        let mut wait = 0;
        for (key, limit) in &keys {
            if let Some(list) = map.get_mut(key) {
                list.retain(|t| now.duration_since(*t) < Self::WINDOW);
                if list.len() >= *limit {
                    let oldest = list.iter().min().copied().unwrap_or(now);
                    wait = wait.max((Self::WINDOW - now.duration_since(oldest)).as_secs().max(1));
                }
            }
        }
        if wait > 0 {
            return Err(wait);
        }
        for (key, _) in keys {
            map.entry(key).or_default().push(now);
        }
        Ok(())
    }

    /// The password was right: the email's attempts no longer count, and this attempt is
    /// taken off the address's count.
    pub fn succeeded(&self, email: &str, address: &str) {
        let mut map = self.attempts.lock().expect("not poisoned");
        map.remove(&format!("email:{email}"));
        if let Some(list) = map.get_mut(&format!("address:{address}")) {
            list.pop();
        }
    }
}

/// Limits connection tests per project: each test opens connections to a host an admin typed.
pub struct TestLimiter {
    limiter: governor::DefaultKeyedRateLimiter<String>,
}

impl TestLimiter {
    pub fn new(per_minute: u32) -> TestLimiter {
        let quota = governor::Quota::per_minute(
            std::num::NonZeroU32::new(per_minute.max(1)).expect("at least 1"),
        );
        TestLimiter {
            limiter: governor::RateLimiter::keyed(quota),
        }
    }

    /// `Ok` when `key` may go ahead now, else the seconds to wait.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.limiter
            .check_key(&key.to_string())
            .map_err(|not_until| {
                not_until
                    .wait_time_from(governor::clock::Clock::now(
                        &governor::clock::DefaultClock::default(),
                    ))
                    .as_secs()
                    .max(1)
            })
    }
}

/// The whole HTTP application.
///
/// The layers wrap the application once, around its routing, instead of each route
/// (`Router::layer`): that boxes every route once more for each layer, and every request
/// cloned its route's chain of boxes and boxed a future at each level.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let app = routes::api()
        .merge(ui::routes())
        .fallback(error::no_route)
        .with_state(state.clone());
    let layered = tower::ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn(ui::security_headers))
        .layer(middleware::from_fn_with_state(state, error::localize))
        .layer(DefaultBodyLimit::max(body_limit))
        .service(app);
    Router::new().fallback_service(layered)
}

pub use routes::ApiDoc;
