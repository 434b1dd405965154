//! Fetch a client-credentials token from tollgate with the ordinary `oauth2` crate, then call a
//! protected route with it.
//!
//! ```sh
//! DEMO_EXIT=0 make demo &            # tollgate on 127.0.0.1:8080, echo upstream on 127.0.0.1:9000
//! cargo run --example fetch_token
//! ```
//!
//! Environment (all optional):
//! * `TOLLGATE_URL`: base URL of tollgate, default `http://127.0.0.1:8080`
//! * `CLIENT_ID`: default `product-sa-client`
//! * `CLIENT_SECRET`: default `password`
//! * `TOLLGATE_REALM`: default `demo` (`services` for deploy/kubernetes.yaml)
//!
//! The token endpoint is `$TOLLGATE_URL/realms/$TOLLGATE_REALM/protocol/openid-connect/token`
//! and the protected call is `GET $TOLLGATE_URL/api/orders/42`.
//!
//! Output of a run against `DEMO_EXIT=0 make demo` (the body is what the demo upstream saw: the
//! identity headers tollgate added):
//!
//! ```text
//! POST http://127.0.0.1:8080/realms/demo/protocol/openid-connect/token (client_credentials as product-sa-client)
//! token_type: Bearer, expires_in: 300s (until about 2026-11-22T16:54:00Z)
//! scope: profile email
//! access_token: 1152 bytes (not printed)
//!
//! GET http://127.0.0.1:8080/api/orders/42 with Authorization: Bearer <token>
//! status: 200 OK
//! body: {"method":"GET","path":"/api/orders/42","identity":{"x-auth-subject":"7b558894-fd7e-8ef2-9be4-f6688c4ad828","x-auth-client-id":"product-sa-client","x-auth-realm":"demo","x-auth-roles":"orders-api:read,reader","x-auth-scope":"profile email"}}
//! ```

use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, RequestTokenError, TokenResponse, TokenUrl};
use std::time::SystemTime;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = env_or("TOLLGATE_URL", "http://127.0.0.1:8080");
    let base = base.trim_end_matches('/');
    let client_id = env_or("CLIENT_ID", "product-sa-client");
    let client_secret = env_or("CLIENT_SECRET", "password");
    let realm = env_or("TOLLGATE_REALM", "demo");
    let token_url = format!("{base}/realms/{realm}/protocol/openid-connect/token");
    let api_url = format!("{base}/api/orders/42");

    // client_secret_basic: `Authorization: Basic base64(client_id:client_secret)`.
    let client = BasicClient::new(ClientId::new(client_id.clone()))
        .set_client_secret(ClientSecret::new(client_secret))
        .set_auth_type(AuthType::BasicAuth)
        .set_token_uri(TokenUrl::new(token_url.clone())?);

    // One HTTP client for the token request and the API call. Never follow redirects on a token
    // request (the oauth2 crate's SSRF advice); the API call does not need them either.
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    println!("POST {token_url} (client_credentials as {client_id})");
    let token = match client.exchange_client_credentials().request(&http) {
        Ok(token) => token,
        Err(RequestTokenError::ServerResponse(e)) => {
            return Err(format!("token endpoint refused: {e}").into());
        }
        Err(e) => return Err(format!("token request failed: {e} ({e:?})").into()),
    };

    match token.expires_in() {
        Some(d) => println!(
            "token_type: {:?}, expires_in: {}s (until about {})",
            token.token_type(),
            d.as_secs(),
            humantime::format_rfc3339_seconds(SystemTime::now() + d)
        ),
        None => println!("token_type: {:?}, no expires_in in the response", token.token_type()),
    }
    let scopes = token
        .scopes()
        .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "(none returned)".to_string());
    println!("scope: {scopes}");
    // The token itself is a credential: show only its size.
    println!(
        "access_token: {} bytes (not printed)",
        token.access_token().secret().len()
    );

    println!();
    println!("GET {api_url} with Authorization: Bearer <token>");
    let resp = http.get(&api_url).bearer_auth(token.access_token().secret()).send()?;
    let status = resp.status();
    let body = resp.text()?;
    println!("status: {status}");
    println!("body: {body}");
    if !status.is_success() {
        return Err(format!("protected call answered {status}").into());
    }
    Ok(())
}
