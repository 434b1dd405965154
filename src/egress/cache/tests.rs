use super::*;
use crate::config::{load, LoadOptions};
use std::path::Path;

/// A State serving a realm whose `svc` client an egress route mints for, with `lifespan`.
fn state(lifespan: &str) -> (Arc<State>, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    std::fs::copy(certs.join("demo-es256.pem"), d.path().join("k.pem")).unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:8080"
[realms.demo]
access_token_lifespan = "{lifespan}"
signing_keys = [{{ kid = "k1", alg = "ES256", private_key = "k.pem" }}]
[realms.demo.clients.svc]
secret = "s"
[egress]
listen = "127.0.0.1:15001"
[[egress.routes]]
upstream = "127.0.0.1:9000"
realm = "demo"
client = "svc"
"#
    );
    let p = d.path().join("proxy.toml");
    std::fs::write(&p, text).unwrap();
    let snap = load(&p, LoadOptions::default()).unwrap();
    (State::new(snap, p, None).unwrap(), d)
}

fn route(state: &State) -> Arc<EgressRoute> {
    state.config.load().egress.as_ref().unwrap().routes[0].clone()
}

fn fetches(state: &State, result: &'static str) -> u64 {
    let labels = crate::metrics::EgressFetch {
        route: route(state).label.clone(),
        result,
    };
    state.metrics.egress_token_fetches.get_or_create(&labels).get()
}

#[test]
fn refresh_points_follow_the_lifetime() {
    let s = |secs: u64| {
        let (r, u) = schedule(Duration::from_secs(secs));
        (r.as_secs_f64(), u.as_secs_f64())
    };
    // Three quarters when that is sooner than 30 s before exp...
    assert_eq!(s(3600), (2700.0, 3595.0));
    assert_eq!(s(300), (225.0, 295.0));
    // ...30 s before exp when that is sooner...
    assert_eq!(s(100), (70.0, 95.0));
    // ...never before half of it.
    assert_eq!(s(40), (20.0, 36.0));
    assert_eq!(s(6), (3.0, 5.4));
    for secs in [1, 2, 6, 40, 100, 300, 86_400] {
        let (r, u) = s(secs);
        assert!(r < u && u < secs as f64, "{secs}: {r} {u}");
    }
}

#[test]
fn backoff_grows_to_its_cap_with_jitter() {
    for (n, secs) in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 10.0), (40, 10.0)] {
        let d = backoff(n).as_secs_f64();
        assert!((secs * 0.75..=secs * 1.25).contains(&d), "{n}: {d}");
    }
}

#[tokio::test]
async fn concurrent_first_requests_share_one_mint_and_later_ones_reuse_it() {
    let (state, _dir) = state("5m");
    let cache = TokenCache::default();
    let entry = cache.entry(&route(&state));
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let (entry, state) = (entry.clone(), state.clone());
            tokio::spawn(async move { entry.token(&state).await.unwrap() })
        })
        .collect();
    let mut tokens = Vec::new();
    for w in waiting {
        tokens.push(w.await.unwrap());
    }
    assert!(tokens.iter().all(|t| Arc::ptr_eq(t, &tokens[0])));
    for _ in 0..50 {
        assert!(Arc::ptr_eq(&entry.token(&state).await.unwrap(), &tokens[0]));
    }
    assert_eq!(fetches(&state, "ok"), 1);
    assert_eq!(format!("{:?}", tokens[0]), "Token(***)");
    let bearer = tokens[0].header.to_str().unwrap();
    let claims: serde_json::Value =
        jsonwebtoken::dangerous::insecure_decode_claims(bearer.strip_prefix("Bearer ").unwrap()).unwrap();
    assert_eq!(claims["azp"], "svc");
    // Another route with the same source gets the same entry.
    assert!(Arc::ptr_eq(&cache.entry(&route(&state)), &entry));
}

#[tokio::test]
async fn a_401_drops_the_token_once_per_interval() {
    let (state, _dir) = state("5m");
    let cache = TokenCache::default();
    let entry = cache.entry(&route(&state));
    let first = entry.token(&state).await.unwrap();
    assert!(entry.unauthorized(&first), "dropped");
    let second = entry.token(&state).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second), "a new token");
    // The stale token's 401 arriving late changes nothing: the retry gets the new one.
    assert!(entry.unauthorized(&first));
    assert!(Arc::ptr_eq(&entry.token(&state).await.unwrap(), &second));
    // An upstream that refuses the new token too does not make another fetch at once.
    assert!(!entry.unauthorized(&second));
    assert!(Arc::ptr_eq(&entry.token(&state).await.unwrap(), &second));
    assert_eq!(fetches(&state, "ok"), 2);
}

async fn wait_for_fetches(state: &State, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while fetches(state, "ok") < n {
        assert!(Instant::now() < deadline, "no refresh");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_due_token_keeps_serving_while_its_refresh_runs_and_an_unused_one_is_left_alone() {
    let (state, _dir) = state("2s");
    let cache = TokenCache::default();
    let entry = cache.entry(&route(&state));
    let first = entry.token(&state).await.unwrap();
    // Used, and due: the refresher starts a refresh, and the token serves while it runs.
    tokio::time::sleep_until((first.refresh_at + Duration::from_millis(20)).into()).await;
    cache.tick(&state);
    assert!(Arc::ptr_eq(&entry.token(&state).await.unwrap(), &first));
    wait_for_fetches(&state, 2).await;
    let second = entry.slot.lock().token.clone().unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert!(second.usable_until > first.usable_until);
    // The refreshed token is not used: past its refresh point the refresher leaves it.
    tokio::time::sleep_until((second.refresh_at + Duration::from_millis(20)).into()).await;
    cache.tick(&state);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(fetches(&state, "ok"), 2);
    // A request then takes it while it is still usable, and that starts the refresh.
    assert!(Arc::ptr_eq(&entry.token(&state).await.unwrap(), &second));
    wait_for_fetches(&state, 3).await;
}

#[tokio::test]
async fn a_source_that_fails_answers_no_token_with_its_backoff_and_is_not_hammered() {
    let (state, dir) = state("5m");
    // The realm's client goes away (a reload the cache has not seen yet): minting fails.
    let p = dir.path().join("proxy.toml");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("[realms.demo.clients.svc]", "[realms.demo.clients.other]");
    std::fs::write(&p, text.replace("client = \"svc\"", "client = \"other\"")).unwrap();
    let route = route(&state);
    state.install(load(&p, LoadOptions::default()).unwrap());
    let cache = TokenCache::default();
    let entry = cache.entry(&route);
    let none = entry.token(&state).await.unwrap_err();
    assert!(none.retry_after > Duration::ZERO && none.retry_after <= Duration::from_millis(625));
    for _ in 0..20 {
        assert!(entry.token(&state).await.is_err());
    }
    let refused = fetches(&state, "refused");
    assert_eq!(refused, 1, "the backoff holds further attempts");
}
