//! The admin listener: /healthz (process up), /readyz (config loaded, with its hash), /metrics.

use crate::state::State;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct Admin {
    pub state: Arc<State>,
}

impl Admin {
    /// Readiness does not depend on the shared store: every replica would leave the load
    /// balancer at once when it is down, while proxying goes on without it.
    fn store_status(&self) -> serde_json::Value {
        match self.state.store.shared() {
            None => serde_json::json!({"kind": "memory"}),
            Some(s) => serde_json::json!({
                "kind": "redis",
                "up": s.is_up(),
                "revocations": s.mirrored(),
            }),
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let (status, ctype, body) = match path.as_str() {
            "/healthz" => (200, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                let snap = self.state.config.load();
                let body = serde_json::json!({
                    "status": "ready",
                    "config_hash": snap.hash,
                    "realms": snap.realms.keys().collect::<Vec<_>>(),
                    "routes": snap.routes.iter().count(),
                    "remote_realms": crate::remote::readiness(&snap, crate::http_util::now()),
                    "store": self.store_status(),
                });
                (200, "application/json", body.to_string().into_bytes())
            }
            "/metrics" => {
                crate::remote::record_ages(&self.state.config.load(), &self.state.metrics, crate::http_util::now());
                let (revoked, _) = self.state.store.sizes();
                self.state.metrics.set("tollgate_revoked_tokens", &[], revoked as f64);
                if let Some(shared) = self.state.store.shared() {
                    let up = if shared.is_up() { 1.0 } else { 0.0 };
                    self.state.metrics.set("tollgate_store_up", &[], up);
                }
                let open = self.state.counters.open();
                self.state.metrics.set("tollgate_connections_open", &[], open as f64);
                self.state
                    .metrics
                    .set("tollgate_token_cache_entries", &[], self.state.token_cache.len() as f64);
                (
                    200,
                    "text/plain; version=0.0.4",
                    self.state.metrics.render().into_bytes(),
                )
            }
            _ => (
                404,
                "application/json",
                br#"{"error":"not_found","error_description":"no such admin endpoint"}"#.to_vec(),
            ),
        };
        Response::builder()
            .status(status)
            .header("content-type", ctype)
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}
