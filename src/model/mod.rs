//! Plain runtime data built by `config` and read by the guard, the issuer and the key engine:
//! realms, clients, routes. Nothing here validates or decides.

pub mod egress;
pub mod realm;
pub mod route;

pub use realm::{Client, ClientKeys, Keys, Realm, RemoteSettings};
pub use route::{prefix_matches, ClaimPath, Cors, Policy, Rate, Route, RouteTable, Upstream};
