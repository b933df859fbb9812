//! The admin HTTP endpoint: `/healthz` (liveness), `/readyz`, `/metrics`,
//! and `/debug/records` when enabled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

use crate::index::{Index, NameDump};
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderName};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// Whether this instance should receive traffic (`/readyz`, `meshdns_ready`):
/// its table is synced and it is not shutting down. While it drains, it is
/// not ready but still answers.
#[derive(Clone)]
pub struct Readiness {
    synced: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    gauge: IntGauge,
}

impl Readiness {
    /// Not synced, not draining; `meshdns_ready` registered in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let gauge = IntGauge::new("meshdns_ready", "1 when ready to serve (synced, not shutting down)")?;
        registry.register(Box::new(gauge.clone()))?;
        Ok(Self {
            synced: Arc::default(),
            draining: Arc::default(),
            gauge,
        })
    }

    /// The table holds every source's first load; answers can be trusted.
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Release);
        self.update();
    }

    /// Shutdown began: stop receiving traffic, keep answering.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.update();
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Synced and not draining: what `/readyz` and `meshdns_ready` report.
    pub fn is_ready(&self) -> bool {
        self.synced() && !self.draining.load(Ordering::Acquire)
    }

    fn update(&self) {
        self.gauge.set(self.is_ready().into());
    }
}

/// `meshdns_build_info` and the process collector (CPU, memory, fds).
pub fn register_process_metrics(registry: &Registry) -> prometheus::Result<()> {
    let info = IntGaugeVec::new(
        Opts::new("meshdns_build_info", "meshdns version; always 1"),
        &["version"],
    )?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    registry.register(Box::new(info))?;
    registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
}

#[derive(Clone)]
pub struct AdminState {
    pub ready: Readiness,
    pub registry: Registry,
    /// Set to serve `/debug/records` (`--debug-endpoints`).
    pub index: Option<Arc<Index>>,
}

pub fn router(state: AdminState) -> Router {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    let router = match state.index.is_some() {
        true => router.route("/debug/records", get(records)),
        false => router,
    };
    router.with_state(state)
}

async fn records(State(state): State<AdminState>) -> Result<Json<Vec<NameDump>>, StatusCode> {
    let index = state.index.ok_or(StatusCode::NOT_FOUND)?;
    Ok(Json(index.dump()))
}

async fn metrics(State(state): State<AdminState>) -> Result<([(HeaderName, &'static str); 1], String), StatusCode> {
    let text = TextEncoder::new()
        .encode_to_string(&state.registry.gather())
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], text))
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.ready.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind admin address {addr}"))
}

pub async fn serve(listener: tokio::net::TcpListener, state: AdminState) -> anyhow::Result<()> {
    axum::serve(listener, router(state))
        .await
        .context("admin server stopped")
}
