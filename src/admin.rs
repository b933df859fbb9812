//! The admin HTTP endpoint: `/healthz` (liveness), `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderName};
use axum::routing::get;
use prometheus::{Registry, TextEncoder};

/// Whether this instance should receive traffic.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AdminState {
    ready: Readiness,
    registry: Registry,
}

pub fn router(ready: Readiness, registry: Registry) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState { ready, registry })
}

async fn metrics(State(state): State<AdminState>) -> Result<([(HeaderName, &'static str); 1], String), StatusCode> {
    let text = TextEncoder::new()
        .encode_to_string(&state.registry.gather())
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], text))
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.ready.get() {
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

pub async fn serve(listener: tokio::net::TcpListener, ready: Readiness, registry: Registry) -> anyhow::Result<()> {
    axum::serve(listener, router(ready, registry))
        .await
        .context("admin server stopped")
}
