//! Varying [`BASE_CONFIG`](super::BASE_CONFIG) by structure: each edit names the server, a realm,
//! a client or a route and sets a key on the parsed TOML, so an edit whose target has moved
//! fails the test instead of silently changing nothing (as a text replacement would).

use toml::{Table, Value};

pub struct Config(Table);

impl Config {
    /// The config most tests use.
    pub fn base() -> Config {
        Config(super::BASE_CONFIG.parse().expect("BASE_CONFIG is TOML"))
    }

    /// `[server] key = value`.
    pub fn server(mut self, key: &str, value: impl Into<Value>) -> Config {
        table(&mut self.0, "server").insert(key.into(), value.into());
        self
    }

    /// `[server]` keys written as TOML lines (`"threads = 1\nwatch = false"`).
    pub fn server_lines(mut self, lines: &str) -> Config {
        let extra: Table = lines.parse().unwrap_or_else(|e| panic!("server lines {lines:?}: {e}"));
        table(&mut self.0, "server").extend(extra);
        self
    }

    /// `[realms.REALM] key = value`; the realm must exist.
    pub fn realm(mut self, realm: &str, key: &str, value: impl Into<Value>) -> Config {
        realm_table(&mut self.0, realm).insert(key.into(), value.into());
        self
    }

    /// `[realms.REALM.clients.ID] key = value`; a client not there yet is added.
    pub fn client(mut self, realm: &str, id: &str, key: &str, value: impl Into<Value>) -> Config {
        let clients = table(realm_table(&mut self.0, realm), "clients");
        table(clients, id).insert(key.into(), value.into());
        self
    }

    /// `key = value` on the route with `prefix`, which must exist.
    pub fn route(mut self, prefix: &str, key: &str, value: impl Into<Value>) -> Config {
        let routes = self.0.get_mut("routes").and_then(Value::as_array_mut).expect("routes");
        let route = routes
            .iter_mut()
            .filter_map(Value::as_table_mut)
            .find(|r| r.get("prefix").and_then(Value::as_str) == Some(prefix))
            .unwrap_or_else(|| panic!("no route {prefix}"));
        route.insert(key.into(), value.into());
        self
    }

    /// Another `[[routes]]` entry, from its keys.
    pub fn add_route(mut self, keys: &[(&str, Value)]) -> Config {
        let route: Table = keys.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let routes = self.0.entry("routes").or_insert_with(|| Value::Array(Vec::new()));
        routes
            .as_array_mut()
            .expect("routes is an array")
            .push(Value::Table(route));
        self
    }

    /// The config as `proxy.toml` text (`{UPSTREAM}` still to be filled in by `Tollgate::start`).
    pub fn render(&self) -> String {
        toml::to_string(&self.0).expect("a table renders")
    }
}

/// A table inline in an array of key/value pairs (`signing_keys = [{ kid = ..., ... }]`).
pub fn inline(keys: &[(&str, &str)]) -> Value {
    Value::Table(keys.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect())
}

fn table<'t>(parent: &'t mut Table, key: &str) -> &'t mut Table {
    parent
        .entry(key)
        .or_insert_with(|| Value::Table(Table::new()))
        .as_table_mut()
        .unwrap_or_else(|| panic!("{key} is not a table"))
}

fn realm_table<'t>(doc: &'t mut Table, realm: &str) -> &'t mut Table {
    table(doc, "realms")
        .get_mut(realm)
        .and_then(Value::as_table_mut)
        .unwrap_or_else(|| panic!("no realm {realm}"))
}
