//! The HTTP interface: the `/v1` JSON API, `/healthz` and the OpenAPI document.
//!
//! Every route authenticates a [`auth::Caller`] and requires one permission; errors are
//! [`error::ApiError`]s rendered in the caller's language by the [`error::localize`]
//! middleware. Handlers are thin: they call the same services the CLI uses.

pub mod auth;
pub mod error;
pub mod json;
pub mod messages;
mod routes;
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

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub accounts: Accounts,
    /// The fallback account from `CARTERO_FALLBACK_SMTP_URL`, if the operator set one.
    pub env_fallback: Option<Arc<EnvFallback>>,
    /// Connection-test settings (timeouts, trust store, destination policy).
    pub probe: Arc<ProbeSettings>,
    /// Connection tests allowed per project and minute.
    pub test_limiter: Arc<TestLimiter>,
    /// Where accepted messages go (group commit).
    pub intake: crate::delivery::intake::Intake,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
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

    /// `Ok` when the project may run a test now, else the seconds to wait.
    pub fn check(&self, project: &str) -> Result<(), u64> {
        self.limiter
            .check_key(&project.to_string())
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
pub fn router(state: AppState) -> Router {
    routes::api()
        .fallback(error::no_route)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            error::localize,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

pub use routes::ApiDoc;
