//! The Redis-backed store against a real redis-server: what one replica writes, another sees.

mod common;

use common::redis::Redis;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate::store::redis::RedisStore;
use tollgate::store::Refused;

fn store(url: &str) -> Arc<RedisStore> {
    Arc::new(RedisStore::new(url, "t:", None, Box::new(|_, _, _| {}), Box::new(|_| {})).unwrap())
}

/// A store that follows the revocations, as every replica's does, connected; dropping the
/// sender stops it.
async fn following(url: &str) -> (Arc<RedisStore>, tokio::sync::oneshot::Sender<()>) {
    let s = store(url);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(s.clone().follow(async {
        let _ = stopped.await;
    }));
    assert!(until(Duration::from_secs(5), || s.is_up()).await, "connected");
    (s, stop)
}

const OWNER: &str = "demo\0c";

async fn until(within: Duration, f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !f() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

fn now() -> u64 {
    common::now()
}

#[tokio::test]
async fn a_revocation_reaches_another_replicas_memory_and_survives_a_restart() {
    let mut redis = Redis::start();
    let ((a, _a), (b, _b)) = (following(&redis.url()).await, following(&redis.url()).await);
    a.revoke_ids(OWNER, &["jti-1"], now() + 60, now()).await.unwrap();
    assert!(a.is_revoked("jti-1"), "the revoking replica knows at once");
    assert!(
        until(Duration::from_secs(1), || b.is_revoked("jti-1")).await,
        "within 1 s at b"
    );
    let ttl = redis.command(&["TTL", "t:{revoked}"]);
    assert!(ttl.starts_with(':') && !ttl.starts_with(":-"), "the set expires: {ttl}");

    // Redis dies: writes fail fast (bounded), the mirror keeps what it knew.
    redis.kill();
    let t = Instant::now();
    assert_eq!(
        a.revoke_ids(OWNER, &["jti-2"], now() + 60, now()).await,
        Err(Refused::Down)
    );
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
    assert!(!a.is_revoked("jti-2"), "nothing is remembered that was not stored");
    assert!(b.is_revoked("jti-1"));
    assert!(until(Duration::from_secs(3), || !b.is_up()).await);

    // Back (empty: no persistence): a revocation made now reaches b through its new subscription.
    redis.restart();
    assert!(
        until(Duration::from_secs(10), || b.is_up()).await,
        "b reconnected by itself"
    );
    let t = Instant::now();
    loop {
        if a.revoke_ids(OWNER, &["jti-3"], now() + 60, now()).await.is_ok() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "a never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(until(Duration::from_secs(1), || b.is_revoked("jti-3")).await);
}

#[tokio::test]
async fn revocations_made_while_a_replica_was_away_are_loaded_when_it_connects() {
    let redis = Redis::start();
    let (a, _a) = following(&redis.url()).await;
    a.revoke_ids(OWNER, &["early", "chain"], now() + 60, now())
        .await
        .unwrap();
    a.revoke_ids(OWNER, &["expired"], now() - 1, now()).await.unwrap();
    let (late, _late) = following(&redis.url()).await;
    assert!(
        late.is_revoked("early") && late.is_revoked("chain"),
        "loaded at connect"
    );
    assert!(!late.is_revoked("expired"), "an expired revocation is not loaded");
}

#[tokio::test]
async fn an_assertion_id_is_accepted_once_across_replicas_and_failures_count_together() {
    let redis = Redis::start();
    let ((a, _a), (b, _b)) = (following(&redis.url()).await, following(&redis.url()).await);
    assert!(a.use_id("demo\0c\0j1", now() + 60).await.unwrap());
    assert!(!b.use_id("demo\0c\0j1", now() + 60).await.unwrap(), "a replay at b");
    let keys = redis.command(&["KEYS", "t:jti:*"]);
    let key = keys.lines().find(|l| l.starts_with("t:jti:")).unwrap();
    assert_eq!(key.len(), "t:jti:".len() + 64, "a hashed id: {key}");
    let ttl = redis.command(&["TTL", key]);
    assert!(ttl.starts_with(':') && !ttl.starts_with(":-"), "expires: {ttl}");
    a.fail(&["c\0x", "wide"], 60).await.unwrap();
    b.fail(&["c\0x"], 60).await.unwrap();
    let w = a.windows(&["c\0x", "wide", "none"]).await.unwrap();
    assert_eq!((w[0].0, w[1].0, w[2]), (2, 1, (0, 0)));
    assert!(w[0].1 > 50 && w[0].1 <= 60, "the window's seconds left: {w:?}");
    b.clear("c\0x").await.unwrap();
    assert_eq!(a.windows(&["c\0x"]).await.unwrap()[0].0, 0);
}

#[tokio::test]
async fn a_client_cannot_revoke_past_its_quota_and_a_refused_revocation_is_not_stored() {
    let redis = Redis::start();
    let (a, _a) = following(&redis.url()).await;
    let ids: Vec<String> = (0..tollgate::store::MAX_PER_OWNER).map(|i| format!("t{i}")).collect();
    for chunk in ids.chunks(1000) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        a.revoke_ids(OWNER, &chunk, now() + 60, now()).await.unwrap();
    }
    assert_eq!(
        a.revoke_ids(OWNER, &["one-more"], now() + 60, now()).await,
        Err(Refused::Full)
    );
    assert!(!a.is_revoked("one-more"));
    assert_eq!(redis.command(&["ZSCORE", "t:{revoked}", "one-more"]), "$-1\r\n");
    a.revoke_ids(OWNER, &["t0"], now() + 120, now()).await.unwrap();
    a.revoke_ids("demo\0other", &["theirs"], now() + 60, now())
        .await
        .unwrap();
}

#[tokio::test]
async fn shared_buckets_hold_what_every_replica_took() {
    use tollgate::store::redis::Take;
    let redis = Redis::start();
    let ((a, _a), (b, _b)) = (following(&redis.url()).await, following(&redis.url()).await);
    let take = |n| Take {
        key: "k".into(),
        taken: n,
        burst: 10,
        per_ms: 10.0 / 60_000.0,
    };
    let left = a.take(&[take(4)]).await.unwrap();
    assert!((left[0] - 6.0).abs() < 0.1, "{left:?}");
    let left = b.take(&[take(7)]).await.unwrap();
    assert!((left[0] + 1.0).abs() < 0.1, "below zero: {left:?}");
    let left = a.take(&[take(0)]).await.unwrap();
    assert!(left[0] < 0.0, "{left:?}");
}

#[test]
fn store_urls_are_checked_without_connecting() {
    use tollgate::store::redis::check_url;
    assert!(
        check_url("redis://127.0.0.1:1/0").is_ok(),
        "nothing listens there: not contacted"
    );
    assert!(check_url("rediss://cache.example:6380/0").is_ok());
    assert!(check_url("http://x").is_err());
    let err = check_url("redis://user:hunter2@[::1/0").unwrap_err();
    assert!(!err.contains("hunter2"), "{err}");
}
