//! The Redis-backed store against a real redis-server: what one replica writes, another sees.

mod common;

use common::redis::Redis;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate::redis_store::RedisStore;

fn store(url: &str) -> Arc<RedisStore> {
    Arc::new(RedisStore::new(url, "t:", Box::new(|_, _, _| {}), Box::new(|_| {})).unwrap())
}

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
    let (a, b) = (store(&redis.url()), store(&redis.url()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn(b.clone().follow(async {
        let _ = stop_rx.await;
    }));
    assert!(until(Duration::from_secs(5), || b.is_up()).await, "b connected");
    a.revoke("jti-1", now() + 60, now()).await.unwrap();
    assert!(a.is_revoked("jti-1"), "the revoking replica knows at once");
    assert!(
        until(Duration::from_secs(1), || b.is_revoked("jti-1")).await,
        "within 1 s at b"
    );
    assert!(redis.command(&["TTL", "t:revoked"]).starts_with(':'), "the set expires");

    // Redis dies: writes fail fast (bounded), the mirror keeps what it knew.
    redis.kill();
    let t = Instant::now();
    assert!(a.revoke("jti-2", now() + 60, now()).await.is_err());
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
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
        if a.revoke("jti-3", now() + 60, now()).await.is_ok() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "a never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(until(Duration::from_secs(1), || b.is_revoked("jti-3")).await);
    let _ = stop_tx.send(());
    let _ = follower.await;
}

#[tokio::test]
async fn revocations_made_while_a_replica_was_away_are_loaded_when_it_connects() {
    let redis = Redis::start();
    let a = store(&redis.url());
    a.revoke("early", now() + 60, now()).await.unwrap();
    a.revoke("expired", now() - 1, now()).await.unwrap();
    let late = store(&redis.url());
    let (_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(late.clone().follow(async {
        let _ = stop_rx.await;
    }));
    assert!(until(Duration::from_secs(5), || late.is_revoked("early")).await);
    assert!(!late.is_revoked("expired"), "an expired revocation is not loaded");
}

#[tokio::test]
async fn an_assertion_id_is_accepted_once_across_replicas_and_failures_count_together() {
    let redis = Redis::start();
    let (a, b) = (store(&redis.url()), store(&redis.url()));
    assert!(a.use_once("demo\0c\0j1", now() + 60).await.unwrap());
    assert!(!b.use_once("demo\0c\0j1", now() + 60).await.unwrap(), "a replay at b");
    assert!(redis.command(&["TTL", "t:jti:demo\0c\0j1"]).starts_with(":"));
    assert_eq!(a.fail("c\0x", 60).await.unwrap(), 1);
    assert_eq!(b.fail("c\0x", 60).await.unwrap(), 2);
    assert_eq!(a.failures("c\0x").await.unwrap(), 2);
    b.clear("c\0x").await.unwrap();
    assert_eq!(a.failures("c\0x").await.unwrap(), 0);
}

#[test]
fn store_urls_are_checked_without_connecting() {
    use tollgate::redis_store::check_url;
    assert!(
        check_url("redis://127.0.0.1:1/0").is_ok(),
        "nothing listens there: not contacted"
    );
    assert!(check_url("rediss://cache.example:6380/0").is_ok());
    assert!(check_url("http://x").is_err());
    let err = check_url("redis://user:hunter2@[::1/0").unwrap_err();
    assert!(!err.contains("hunter2"), "{err}");
}
