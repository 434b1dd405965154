//! Client scopes and protocol mappers as Keycloak applies them to a client-credentials token:
//! which client scopes a client has (its own lists, else the realm's defaults, else the built-in
//! ones Keycloak makes for a file without client scopes), which of them Keycloak names in
//! `scope` (`include.in.token.scope`, true when absent), and what each mapper on the client or
//! on those scopes does to the token.

use super::export::{attr, attr_true, ClientRep, MapperRep, RealmRep, UserRep};
use serde_json::Value;
use std::collections::BTreeMap;

const OIDC: &str = "openid-connect";

#[derive(Debug)]
pub struct Scope {
    pub name: String,
    pub oidc: bool,
    /// Named in the token's `scope` (`ClientScopeModel.isIncludeInTokenScope`).
    pub in_token_scope: bool,
    pub mappers: Vec<MapperRep>,
}

/// Where a client's scopes came from, for the comment beside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopesFrom {
    Client,
    Realm,
    BuiltIn,
}

/// The realm's client scopes and the defaults it gives a client that names none.
#[derive(Debug)]
pub struct Catalogue {
    scopes: BTreeMap<String, Scope>,
    defaults: Vec<String>,
    optional: Vec<String>,
    /// The export had no `clientScopes`: Keycloak made its built-in ones on import.
    pub built_in: bool,
}

pub struct ClientScopes<'a> {
    pub default: Vec<&'a Scope>,
    pub optional: Vec<&'a Scope>,
    pub from: ScopesFrom,
}

fn mapper(name: &str, kind: &str, config: &[(&str, &str)]) -> MapperRep {
    MapperRep {
        name: Some(name.into()),
        protocol: Some(OIDC.into()),
        protocol_mapper: Some(kind.into()),
        config: Some(
            config
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect(),
        ),
    }
}

/// The client scopes Keycloak 25/26 makes in a new realm (`OIDCLoginProtocolFactory`), with the
/// mappers among theirs that can reach a service account's token.
fn built_in() -> Vec<Scope> {
    let claim = |name: &str, property: &str, claim: &str| {
        mapper(
            name,
            "oidc-usermodel-property-mapper",
            &[
                ("user.attribute", property),
                ("claim.name", claim),
                ("access.token.claim", "true"),
            ],
        )
    };
    let scope = |name: &str, in_token_scope: bool, mappers: Vec<MapperRep>| Scope {
        name: name.into(),
        oidc: true,
        in_token_scope,
        mappers,
    };
    let roles = vec![
        mapper(
            "realm roles",
            "oidc-usermodel-realm-role-mapper",
            &[("claim.name", "realm_access.roles"), ("access.token.claim", "true")],
        ),
        mapper(
            "client roles",
            "oidc-usermodel-client-role-mapper",
            &[
                ("claim.name", "resource_access.${client_id}.roles"),
                ("access.token.claim", "true"),
            ],
        ),
        mapper(
            "audience resolve",
            "oidc-audience-resolve-mapper",
            &[("access.token.claim", "true")],
        ),
    ];
    let profile = vec![
        claim("given name", "firstName", "given_name"),
        claim("family name", "lastName", "family_name"),
        mapper("full name", "oidc-full-name-mapper", &[("access.token.claim", "true")]),
    ];
    vec![
        scope("profile", true, profile),
        scope("email", true, vec![claim("email", "email", "email")]),
        scope("address", true, vec![]),
        scope("phone", true, vec![]),
        scope("offline_access", true, vec![]),
        scope("roles", false, roles),
        scope(
            "web-origins",
            false,
            vec![mapper("allowed web origins", "oidc-allowed-origins-mapper", &[])],
        ),
        scope("microprofile-jwt", true, vec![]),
        scope("acr", false, vec![]),
        scope("basic", false, vec![]),
    ]
}

impl Catalogue {
    pub fn from_export(rep: &RealmRep) -> Catalogue {
        let built_in = rep.client_scopes.is_none();
        let scopes: Vec<Scope> = match &rep.client_scopes {
            None => self::built_in(),
            Some(list) => list
                .iter()
                .filter_map(|s| {
                    Some(Scope {
                        name: s.name.clone()?,
                        oidc: s.protocol.as_deref().unwrap_or(OIDC) == OIDC,
                        in_token_scope: attr(s.attributes.as_ref(), "include.in.token.scope")
                            .is_none_or(|v| v.eq_ignore_ascii_case("true")),
                        mappers: s.protocol_mappers.clone().unwrap_or_default(),
                    })
                })
                .collect(),
        };
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let defaults = match (&rep.default_default_client_scopes, built_in) {
            (Some(list), _) => list.clone(),
            (None, true) => names(&["profile", "email", "roles", "web-origins", "acr", "basic"]),
            (None, false) => vec![],
        };
        let optional = match (&rep.default_optional_client_scopes, built_in) {
            (Some(list), _) => list.clone(),
            (None, true) => names(&["address", "phone", "offline_access", "microprofile-jwt"]),
            (None, false) => vec![],
        };
        Catalogue {
            scopes: scopes.into_iter().map(|s| (s.name.clone(), s)).collect(),
            defaults,
            optional,
            built_in,
        }
    }

    /// A client's default and optional client scopes of its protocol (`ClientModel.getClientScopes`):
    /// its own lists when it has either, else the realm's defaults. Names of scopes the realm
    /// lacks are dropped, as Keycloak drops them on import.
    pub fn of_client(&self, client: &ClientRep) -> ClientScopes<'_> {
        let own = client.default_client_scopes.is_some() || client.optional_client_scopes.is_some();
        let (default, optional, from) = if own {
            (
                client.default_client_scopes.clone().unwrap_or_default(),
                client.optional_client_scopes.clone().unwrap_or_default(),
                ScopesFrom::Client,
            )
        } else {
            let from = if self.built_in {
                ScopesFrom::BuiltIn
            } else {
                ScopesFrom::Realm
            };
            (self.defaults.clone(), self.optional.clone(), from)
        };
        let pick = |names: &[String]| -> Vec<&Scope> {
            let mut out: Vec<&Scope> = Vec::new();
            for n in names {
                if let Some(s) = self.scopes.get(n).filter(|s| s.oidc) {
                    if !out.iter().any(|o| o.name == s.name) {
                        out.push(s);
                    }
                }
            }
            out
        };
        let default = pick(&default);
        let optional: Vec<&Scope> = pick(&optional)
            .into_iter()
            .filter(|s| !default.iter().any(|d| d.name == s.name))
            .collect();
        ClientScopes {
            default,
            optional,
            from,
        }
    }
}

/// What a protocol mapper does to a service account's access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing tollgate's token lacks.
    None,
    /// `realm_access.roles`.
    RealmRoles,
    /// `resource_access.<client>.roles`, for every client or only the one named.
    ClientRoles(Option<String>),
    /// Roles under another claim name: lost only if there are roles to write.
    RolesClaim { realm: bool, claim: String },
    /// `aud` += every other client the token holds roles of.
    AudienceResolve,
    /// `aud` += this.
    Audience(String),
    /// A claim tollgate's token does not carry.
    LeftOut(String),
}

/// Keycloak's `OIDCAttributeMapperHelper.includeInAccessToken`: only "true" includes; the
/// audience-resolve and web-origins mappers treat an absent setting as true.
fn in_access_token(m: &MapperRep, absent: bool) -> bool {
    m.config("access.token.claim").map_or(absent, |v| v == "true")
}

fn user_has(user: Option<&UserRep>, property: &str) -> bool {
    let Some(u) = user else { return false };
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    match property {
        "email" => set(&u.email),
        "firstName" => set(&u.first_name),
        "lastName" => set(&u.last_name),
        other => attr(u.attributes.as_ref(), other).is_some_and(|v| !v.is_empty()),
    }
}

/// What mapper `m` on `client` (or on one of its scopes) adds to the token of `user` (None: the
/// service account Keycloak makes on first use, which has no attributes).
pub fn effect(m: &MapperRep, client: &ClientRep, user: Option<&UserRep>) -> Effect {
    if m.protocol.as_deref().is_some_and(|p| p != OIDC) {
        return Effect::None;
    }
    let kind = m.protocol_mapper.as_deref().unwrap_or("");
    let claim = m.config("claim.name").unwrap_or_default();
    let lost = |what: String| Effect::LeftOut(format!("{what} (from {})", m.label()));
    match kind {
        "oidc-audience-resolve-mapper" if in_access_token(m, true) => Effect::AudienceResolve,
        "oidc-allowed-origins-mapper"
            if in_access_token(m, true) && client.web_origins.as_ref().is_some_and(|w| !w.is_empty()) =>
        {
            lost("claim \"allowed-origins\"".into())
        }
        "oidc-audience-resolve-mapper" | "oidc-allowed-origins-mapper" => Effect::None,
        _ if !in_access_token(m, false) => Effect::None,
        "oidc-audience-mapper" => {
            let value = |k: &str| m.config(k).filter(|v| !v.trim().is_empty());
            match value("included.client.audience").or_else(|| value("included.custom.audience")) {
                Some(aud) => Effect::Audience(aud),
                None => Effect::None,
            }
        }
        "oidc-usermodel-realm-role-mapper" | "oidc-usermodel-client-role-mapper" => {
            let realm = kind == "oidc-usermodel-realm-role-mapper";
            let prefix_key = if realm {
                "usermodel.realmRoleMapping.rolePrefix"
            } else {
                "usermodel.clientRoleMapping.rolePrefix"
            };
            let standard = if realm {
                "realm_access.roles"
            } else {
                "resource_access.${client_id}.roles"
            };
            if claim != standard || m.config(prefix_key).is_some_and(|p| !p.is_empty()) {
                Effect::RolesClaim { realm, claim }
            } else if realm {
                Effect::RealmRoles
            } else {
                Effect::ClientRoles(
                    m.config("usermodel.clientRoleMapping.clientId")
                        .filter(|c| !c.is_empty()),
                )
            }
        }
        "oidc-usersessionmodel-note-mapper" => match m.config("user.session.note").as_deref() {
            // tollgate's own client_id, clientHost, clientAddress; auth_time of the session.
            Some("clientId" | "client_id" | "clientHost" | "clientAddress" | "AUTH_TIME") => Effect::None,
            _ => lost(format!("claim {claim:?}")),
        },
        // tollgate's own sub and acr.
        "oidc-sub-mapper" | "oidc-acr-mapper" => Effect::None,
        "oidc-usermodel-property-mapper" => match m.config("user.attribute").as_deref() {
            Some("username" | "emailVerified") => Effect::None,
            Some(p) if !user_has(user, p) => Effect::None,
            _ => lost(format!("claim {claim:?}")),
        },
        "oidc-usermodel-attribute-mapper" => match m.config("user.attribute") {
            Some(a) if !user_has(user, &a) => Effect::None,
            _ => lost(format!("claim {claim:?}")),
        },
        "oidc-full-name-mapper" if !user_has(user, "firstName") && !user_has(user, "lastName") => Effect::None,
        "oidc-address-mapper"
            if !["formatted", "street", "locality", "region", "postal_code", "country"]
                .iter()
                .any(|a| user_has(user, a)) =>
        {
            Effect::None
        }
        "oidc-group-membership-mapper" if user.is_none_or(|u| u.groups.as_ref().is_none_or(Vec::is_empty)) => {
            Effect::None
        }
        _ => lost(if claim.is_empty() {
            "its claims".into()
        } else {
            format!("claim {claim:?}")
        }),
    }
}

/// Client attributes that change a client-credentials token in ways tollgate has no setting for.
pub fn untranslatable_attributes(client: &ClientRep) -> Vec<String> {
    let attrs = client.attributes.as_ref();
    let mut out = Vec::new();
    if let Some(secs) = attr(attrs, "access.token.lifespan").filter(|v| !v.is_empty() && v != "-1") {
        out.push(format!(
            "its own access token lifespan ({secs} s): its tokens live as long as the realm's"
        ));
    }
    if let Some(alg) = attr(attrs, "access.token.signed.response.alg").filter(|v| !v.is_empty()) {
        out.push(format!(
            "its own token signing algorithm ({alg}): tokens are signed with the realm's key"
        ));
    }
    for (key, what) in [
        (
            "client.use.lightweight.access.token.enabled",
            "lightweight access tokens",
        ),
        (
            "tls.client.certificate.bound.access.tokens",
            "certificate-bound access tokens (RFC 8705)",
        ),
        ("dpop.bound.access.tokens", "DPoP-bound access tokens"),
    ] {
        if attr_true(attrs, key) {
            out.push(what.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kind: &str, config: &[(&str, &str)]) -> MapperRep {
        mapper("m", kind, config)
    }

    #[test]
    fn a_file_without_client_scopes_gets_keycloaks_built_in_ones() {
        let cat = Catalogue::from_export(&serde_json::from_str(r#"{"realm":"r"}"#).unwrap());
        let c: ClientRep = serde_json::from_str(r#"{"clientId":"c"}"#).unwrap();
        let s = cat.of_client(&c);
        assert_eq!(s.from, ScopesFrom::BuiltIn);
        let named: Vec<_> = s
            .default
            .iter()
            .filter(|s| s.in_token_scope)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(named, ["profile", "email"]);
        let opt: Vec<_> = s.optional.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(opt, ["address", "phone", "offline_access", "microprofile-jwt"]);
    }

    #[test]
    fn include_in_token_scope_is_true_unless_it_says_otherwise_and_saml_scopes_stay_out() {
        let cat = Catalogue::from_export(
            &serde_json::from_str(
                r#"{"realm":"r","clientScopes":[
                  {"name":"a"},{"name":"b","attributes":{"include.in.token.scope":"false"}},
                  {"name":"c","attributes":{"include.in.token.scope":"TRUE"}},{"name":"role_list","protocol":"saml"}],
                  "defaultDefaultClientScopes":["a","b"]}"#,
            )
            .unwrap(),
        );
        let own: ClientRep =
            serde_json::from_str(r#"{"defaultClientScopes":["a","b","c","role_list","nope"]}"#).unwrap();
        let s = cat.of_client(&own);
        let flags: Vec<_> = s.default.iter().map(|s| (s.name.as_str(), s.in_token_scope)).collect();
        assert_eq!(flags, [("a", true), ("b", false), ("c", true)]);
        let realm_defaults = cat.of_client(&ClientRep::default());
        assert_eq!(realm_defaults.from, ScopesFrom::Realm);
        assert_eq!(realm_defaults.default.len(), 2);
        let only_optional: ClientRep = serde_json::from_str(r#"{"optionalClientScopes":["a"]}"#).unwrap();
        assert!(
            cat.of_client(&only_optional).default.is_empty(),
            "its own lists replace the realm's"
        );
    }

    #[test]
    fn mappers_are_read_as_keycloak_applies_them() {
        let c = ClientRep::default();
        let aud = m(
            "oidc-audience-mapper",
            &[("included.client.audience", "api"), ("access.token.claim", "true")],
        );
        assert_eq!(effect(&aud, &c, None), Effect::Audience("api".into()));
        let custom = m(
            "oidc-audience-mapper",
            &[
                ("included.client.audience", ""),
                ("included.custom.audience", "urn:x"),
                ("access.token.claim", "true"),
            ],
        );
        assert_eq!(effect(&custom, &c, None), Effect::Audience("urn:x".into()));
        let id_only = m("oidc-audience-mapper", &[("included.client.audience", "api")]);
        assert_eq!(
            effect(&id_only, &c, None),
            Effect::None,
            "access.token.claim absent: not in the access token"
        );
        assert_eq!(
            effect(&m("oidc-audience-resolve-mapper", &[]), &c, None),
            Effect::AudienceResolve
        );
        let groups = m(
            "oidc-usermodel-realm-role-mapper",
            &[("claim.name", "groups"), ("access.token.claim", "true")],
        );
        assert!(matches!(
            effect(&groups, &c, None),
            Effect::RolesClaim { realm: true, .. }
        ));
        let hard = m(
            "oidc-hardcoded-claim-mapper",
            &[("claim.name", "tenant"), ("access.token.claim", "true")],
        );
        assert!(matches!(effect(&hard, &c, None), Effect::LeftOut(w) if w.contains("tenant")));
        let user: UserRep = serde_json::from_str(r#"{"attributes":{"bpn":["BPNL1"]}}"#).unwrap();
        let bpn = m(
            "oidc-usermodel-attribute-mapper",
            &[
                ("user.attribute", "bpn"),
                ("claim.name", "bpn"),
                ("access.token.claim", "true"),
            ],
        );
        assert!(matches!(effect(&bpn, &c, Some(&user)), Effect::LeftOut(_)));
        assert_eq!(
            effect(&bpn, &c, None),
            Effect::None,
            "an attribute the account lacks writes nothing"
        );
    }
}
