//! The daemon's HTTP endpoint: iPXE clients fetch `/boot.ipxe` and get a script chosen for
//! them by the `[http]` rules (chain, sanboot or exit, by MAC, UUID or default), like the PXE
//! seed's `boot2.php`. A client that has not said who it is gets a script that asks again with
//! its `${mac}` and `${uuid}`. Every answer is logged at debug with the client's MAC, and
//! counted in a summary logged at most once a minute.
//!
//! [`serve`] takes everything it uses as arguments (a bound listener, the rules, a shutdown
//! future), so the daemon and the tests run the same server, the tests on port 0.

mod config;
mod limit;
mod query;
mod summary;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::IncomingStream;
use axum::Router;
use thiserror::Error;
use tokio::net::TcpListener;

pub use config::{HttpConfig, DEFAULT_PORT};
pub use limit::Limits;
pub use query::{parse_query, ClientQuery, QueryError, MAX_QUERY};

use crate::pxe::overlay::RuleOverlay;
use crate::pxe::script::{client_script, identify_script, ScriptRules, SCRIPT_PATH};
use limit::BoundedListener;
use summary::{Event, Summary};

/// How often at most the endpoint logs its summary line.
const SUMMARY_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// What the request handler uses.
#[derive(Clone)]
struct AppState {
    /// The rules in force.
    rules: Arc<SharedRules>,
    /// The counts behind the rate-limited summary line.
    summary: Arc<Summary>,
}

/// The rules the endpoint answers by, replaceable while it serves: the configuration's
/// (replaced by a reload) with the rules of an outside source laid over them (etcd).
#[derive(Debug, Default)]
pub struct SharedRules(RwLock<Rules>);

#[derive(Debug, Default)]
struct Rules {
    /// The configuration's `[http]` rules.
    base: ScriptRules,
    /// The outside source's rules.
    overlay: RuleOverlay,
    /// `overlay` over `base`, as served.
    current: Arc<ScriptRules>,
}

impl SharedRules {
    /// Starts with `rules`.
    pub fn new(rules: ScriptRules) -> Self {
        let current = Arc::new(rules.clone());
        Self(RwLock::new(Rules {
            base: rules,
            overlay: RuleOverlay::default(),
            current,
        }))
    }

    /// Replaces the configuration's rules; requests already answered keep what they got.
    pub fn replace(&self, rules: ScriptRules) {
        let mut r = self.0.write().unwrap_or_else(|p| p.into_inner());
        r.current = Arc::new(r.overlay.over(&rules));
        r.base = rules;
    }

    /// Replaces the outside source's rules.
    pub fn set_overlay(&self, overlay: RuleOverlay) {
        let mut r = self.0.write().unwrap_or_else(|p| p.into_inner());
        r.current = Arc::new(overlay.over(&r.base));
        r.overlay = overlay;
    }

    /// The rules in force now.
    pub fn current(&self) -> Arc<ScriptRules> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .current
            .clone()
    }
}

/// The endpoint could not start.
#[derive(Debug, Error)]
pub enum HttpError {
    /// The configured address cannot be bound.
    #[error("cannot listen for iPXE script requests on {addr} (see [http] address and port)")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Binds the configured address.
pub async fn bind(cfg: &HttpConfig) -> Result<TcpListener, HttpError> {
    let addr = cfg.listen_addr();
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Both ends of a connection: the client, for the log, and the address it reached us on,
/// which the identify script points back to.
#[derive(Debug, Clone, Copy)]
struct Peer {
    local: SocketAddr,
    remote: SocketAddr,
}

impl Connected<IncomingStream<'_, BoundedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, BoundedListener>) -> Self {
        let remote = *stream.remote_addr();
        let local = stream.io().local_addr().unwrap_or_else(|e| {
            tracing::warn!(client = %remote, error = %e, "cannot read the local address");
            SocketAddr::from(([0, 0, 0, 0], 0))
        });
        Peer { local, remote }
    }
}

/// Serves script requests on `listener` until `shutdown` completes, then finishes the requests
/// in flight and returns (within [`Limits::lifetime`] at most).
pub async fn serve(
    listener: TcpListener,
    rules: Arc<SharedRules>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with_limits(listener, rules, shutdown, Limits::default()).await
}

/// [`serve`] with other bounds on connections.
pub async fn serve_with_limits(
    listener: TcpListener,
    rules: Arc<SharedRules>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(address = %addr, "serving iPXE scripts at {SCRIPT_PATH}");
    }
    let summary = Arc::new(Summary::new(SUMMARY_EVERY));
    let app = Router::new()
        .route(SCRIPT_PATH, get(boot_script))
        .fallback(not_found)
        .with_state(AppState {
            rules,
            summary: summary.clone(),
        });
    let listener = BoundedListener::new(listener, limits, summary);
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown)
        .await
}

async fn boot_script(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match parse_query(raw.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => {
            tracing::debug!(client = %peer.remote, error = %e, "refused an iPXE script request");
            state.summary.record(Event::BadRequest);
            return text(StatusCode::BAD_REQUEST, format!("bad request: {e}\n"));
        }
    };
    state.summary.record(Event::Served);
    let Some(mac) = query.mac else {
        tracing::debug!(client = %peer.remote, "asked an iPXE client to identify itself");
        return text(StatusCode::OK, identify_script(peer.local));
    };
    let rules = state.rules.current();
    let (action, matched) = rules.choose(&mac, query.uuid.as_ref());
    let uuid = query.uuid.map(|u| u.to_string());
    tracing::debug!(
        mac = %mac,
        uuid = %uuid.as_deref().unwrap_or("-"),
        client = %peer.remote,
        rule = %matched.as_str(),
        action = %action,
        "served an iPXE script"
    );
    text(StatusCode::OK, client_script(&mac, matched, action))
}

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("not found: this endpoint serves {SCRIPT_PATH} only\n"),
    )
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests;
