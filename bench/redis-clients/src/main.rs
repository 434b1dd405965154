//! redis-rs (with its ConnectionManager, as tollgate's store uses it) and fred, on the command
//! shapes tollgate sends to Redis, against the same server in the same run:
//!
//! - `set_nx`: `SET key 1 NX PX 60000`, one in flight (a client assertion's replay check, on
//!   the token request);
//! - `set_nx_x64`: the same with 64 in flight on one connection (a burst of token requests);
//! - `eval`: EVAL of a Lua script over 100 keys (the rate-limit bucket sync every 100 ms);
//! - `publish`: PUBLISH to a channel a second connection subscribes to, one in flight, timed
//!   until the subscriber has the message (a revocation reaching the other replicas).
//!
//! Prints, per client and shape: operations per second and this process's CPU (user + system)
//! per operation. Rounds alternate between the clients so the machine's load hits both alike.
//!
//! Usage: redis-clients redis://127.0.0.1:PORT [ops per round] [rounds]

use fred::prelude::*;
use futures_util::StreamExt;
use std::time::{Duration, Instant};

const SCRIPT: &str = "for i, k in ipairs(KEYS) do redis.call('SET', k, ARGV[1], 'PX', 60000) end return #KEYS";

fn cpu() -> Duration {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    SetNx,
    SetNx64,
    Eval,
    Publish,
}

const SHAPES: [Shape; 4] = [Shape::SetNx, Shape::SetNx64, Shape::Eval, Shape::Publish];

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::SetNx => "set_nx",
            Shape::SetNx64 => "set_nx_x64",
            Shape::Eval => "eval",
            Shape::Publish => "publish",
        }
    }
}

struct RedisRs {
    con: redis::aio::ConnectionManager,
    sub: redis::aio::PubSub,
}

impl RedisRs {
    async fn new(url: &str) -> RedisRs {
        let client = redis::Client::open(url).unwrap();
        let con = client.get_connection_manager().await.unwrap();
        let mut sub = client.get_async_pubsub().await.unwrap();
        sub.subscribe("bench-rs").await.unwrap();
        RedisRs { con, sub }
    }

    async fn run(&mut self, shape: Shape, n: usize, round: usize) {
        match shape {
            Shape::SetNx => {
                for i in 0..n {
                    let _: Option<String> = redis::cmd("SET")
                        .arg(format!("rs:{round}:{i}"))
                        .arg(1)
                        .arg("NX")
                        .arg("PX")
                        .arg(60000)
                        .query_async(&mut self.con)
                        .await
                        .unwrap();
                }
            }
            Shape::SetNx64 => {
                let con = self.con.clone();
                futures_util::stream::iter(0..n)
                    .for_each_concurrent(64, |i| {
                        let mut con = con.clone();
                        async move {
                            let _: Option<String> = redis::cmd("SET")
                                .arg(format!("rs64:{round}:{i}"))
                                .arg(1)
                                .arg("NX")
                                .arg("PX")
                                .arg(60000)
                                .query_async(&mut con)
                                .await
                                .unwrap();
                        }
                    })
                    .await;
            }
            Shape::Eval => {
                for i in 0..n / 100 {
                    let keys: Vec<String> = (0..100).map(|k| format!("rse:{round}:{i}:{k}")).collect();
                    let _: i64 = redis::cmd("EVAL")
                        .arg(SCRIPT)
                        .arg(keys.len())
                        .arg(&keys)
                        .arg(1)
                        .query_async(&mut self.con)
                        .await
                        .unwrap();
                }
            }
            Shape::Publish => {
                let mut stream = self.sub.on_message();
                for i in 0..n {
                    let _: i64 = redis::cmd("PUBLISH")
                        .arg("bench-rs")
                        .arg(format!("jti-{round}-{i}"))
                        .query_async(&mut self.con)
                        .await
                        .unwrap();
                    stream.next().await.unwrap();
                }
            }
        }
    }
}

struct Fred {
    client: Client,
    sub: Client,
}

impl Fred {
    async fn new(url: &str) -> Fred {
        let config = Config::from_url(url).unwrap();
        let client = Builder::from_config(config.clone()).build().unwrap();
        client.init().await.unwrap();
        let sub = Builder::from_config(config).build().unwrap();
        sub.init().await.unwrap();
        sub.subscribe("bench-fred").await.unwrap();
        Fred { client, sub }
    }

    async fn run(&mut self, shape: Shape, n: usize, round: usize) {
        match shape {
            Shape::SetNx => {
                for i in 0..n {
                    let _: Option<String> = self
                        .client
                        .set(
                            format!("fr:{round}:{i}"),
                            1,
                            Some(Expiration::PX(60000)),
                            Some(SetOptions::NX),
                            false,
                        )
                        .await
                        .unwrap();
                }
            }
            Shape::SetNx64 => {
                let client = &self.client;
                futures_util::stream::iter(0..n)
                    .for_each_concurrent(64, |i| async move {
                        let _: Option<String> = client
                            .set(
                                format!("fr64:{round}:{i}"),
                                1,
                                Some(Expiration::PX(60000)),
                                Some(SetOptions::NX),
                                false,
                            )
                            .await
                            .unwrap();
                    })
                    .await;
            }
            Shape::Eval => {
                for i in 0..n / 100 {
                    let keys: Vec<String> = (0..100).map(|k| format!("fre:{round}:{i}:{k}")).collect();
                    let _: i64 = self.client.eval(SCRIPT, keys, vec![1]).await.unwrap();
                }
            }
            Shape::Publish => {
                let mut rx = self.sub.message_rx();
                for i in 0..n {
                    let _: i64 = self
                        .client
                        .publish("bench-fred", format!("jti-{round}-{i}"))
                        .await
                        .unwrap();
                    rx.recv().await.unwrap();
                }
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: redis-clients redis://HOST:PORT [ops] [rounds]");
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let mut rs = RedisRs::new(&url).await;
    let mut fr = Fred::new(&url).await;
    // One warm-up round each, not counted.
    for shape in SHAPES {
        rs.run(shape, n / 10, 999).await;
        fr.run(shape, n / 10, 999).await;
    }
    println!("{n} operations per round, {rounds} rounds, current-thread runtime, medians");
    println!(
        "{:<12} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "shape", "rs ops/s", "fred ops/s", "rs cpu us", "fred cpu us", "fred/rs cpu"
    );
    for shape in SHAPES {
        let (mut rs_rate, mut fr_rate, mut rs_cpu, mut fr_cpu) = (vec![], vec![], vec![], vec![]);
        for round in 0..rounds {
            for which in [0, 1] {
                let (c0, t0) = (cpu(), Instant::now());
                if which == 0 {
                    rs.run(shape, n, round).await;
                } else {
                    fr.run(shape, n, round).await;
                }
                let (wall, used) = (t0.elapsed().as_secs_f64(), (cpu() - c0).as_secs_f64());
                let ops = if shape == Shape::Eval {
                    (n / 100 * 100) as f64
                } else {
                    n as f64
                };
                let (rate, per) = (ops / wall, used * 1e6 / ops);
                if which == 0 {
                    rs_rate.push(rate);
                    rs_cpu.push(per);
                } else {
                    fr_rate.push(rate);
                    fr_cpu.push(per);
                }
            }
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (a, b, c, d) = (med(&mut rs_rate), med(&mut fr_rate), med(&mut rs_cpu), med(&mut fr_cpu));
        println!(
            "{:<12} {:>12.0} {:>12.0} {:>12.2} {:>12.2} {:>10.2}",
            shape.name(),
            a,
            b,
            c,
            d,
            d / c
        );
    }
}
