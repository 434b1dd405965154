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
                let m = &self.state.metrics;
                let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                m.revoked_tokens.set(gauge(self.state.store.sizes().0));
                m.connections_open.set(gauge(self.state.counters.open()));
                m.token_cache_entries.set(gauge(self.state.token_cache.len()));
                if let Some(shared) = self.state.store.shared() {
                    m.store_up.set(i64::from(shared.is_up()));
                }
                (200, crate::metrics::CONTENT_TYPE, m.render().into_bytes())
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
