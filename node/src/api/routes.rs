//! The one route table of the HTTP API. Each entry says who may call it
//! (its [`Class`]) and where it is served (its [`Locality`]); the router
//! is built from it ([`router`]), and the token check (`auth::check`) and
//! forwarding (`forward::forward`) look both up from the route the router
//! matched (axum's [`MatchedPath`](axum::extract::MatchedPath)), so the
//! three can never disagree about a path.
//!
//! What matched no entry: a known path with another method (405) needs the
//! strictest class of that path's entries and at least what its method
//! needs (`GET`/`HEAD`: read, others: write); an unknown path (404) needs
//! what its method needs. Both are answered where they arrive.

use std::sync::Arc;

use axum::http::Method;
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use skein_protocol::api::TokenRole;

use super::{dashboard, images, logs, monitor, plan, rollout, tokens};
use crate::context::NodeCtx;

/// Who may make a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Anyone (health checks, the dashboard's static files).
    Public,
    /// A `read` token (or `--open-reads`).
    Read,
    /// A `write` token.
    Write,
    /// An `admin` token.
    Admin,
}

impl Class {
    /// The token role it needs; `None` = public.
    pub fn role(self) -> Option<TokenRole> {
        match self {
            Class::Public => None,
            Class::Read => Some(TokenRole::Read),
            Class::Write => Some(TokenRole::Write),
            Class::Admin => Some(TokenRole::Admin),
        }
    }

    /// What a method needs by itself.
    fn of_method(method: &Method) -> Self {
        if method == Method::GET || method == Method::HEAD {
            Class::Read
        } else {
            Class::Write
        }
    }
}

/// Where a call is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locality {
    /// By the node it enters, from its own view (gossip, journal, its own
    /// Docker): status, nodes, events, usage, services, images, logs, the
    /// dashboard.
    Local,
    /// By the leader (writes; forwarded there, retried with the next
    /// leader).
    Leader,
    /// By the leader, so a client reads its own writes; when no leader
    /// can be reached, a Raft member answers from its own replica.
    LeaderOrReplica,
}

/// The methods routes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `GET` (and `HEAD`, which axum answers with the `GET` handler).
    Get,
    /// `POST`.
    Post,
    /// `DELETE`.
    Delete,
}

impl Verb {
    fn matches(self, method: &Method) -> bool {
        match self {
            Verb::Get => method == Method::GET || method == Method::HEAD,
            Verb::Post => method == Method::POST,
            Verb::Delete => method == Method::DELETE,
        }
    }
}

/// One route.
pub struct Route {
    /// Method.
    pub verb: Verb,
    /// Path pattern, as axum matches it (`{name}` segments).
    pub path: &'static str,
    /// Who may call it.
    pub class: Class,
    /// Where it is served.
    pub locality: Locality,
    /// Its handler, for this method.
    handler: fn() -> MethodRouter<Arc<NodeCtx>>,
}

use Class::{Admin, Public, Read, Write};
use Locality::{Leader, LeaderOrReplica, Local};
use Verb::{Delete, Get, Post};

const fn r(
    verb: Verb,
    path: &'static str,
    class: Class,
    locality: Locality,
    handler: fn() -> MethodRouter<Arc<NodeCtx>>,
) -> Route {
    Route {
        verb,
        path,
        class,
        locality,
        handler,
    }
}

/// Every route of the API. `POST /v1/plan` is a write: it changes
/// nothing, but costs the leader seconds of CPU. Tokens and writes to
/// registries (cluster-wide credentials) are admin; reading registries is
/// not (no secret is shown).
pub static ROUTES: &[Route] = &[
    r(Get, "/v1/status", Public, Local, || get(super::status)),
    r(Get, "/v1/nodes", Read, Local, || get(super::nodes)),
    r(Get, "/v1/jobs", Read, LeaderOrReplica, || get(super::jobs)),
    r(Post, "/v1/jobs", Write, Leader, || post(super::apply)),
    r(Post, "/v1/plan", Write, Leader, || post(plan::plan)),
    r(Get, "/v1/jobs/{name}", Read, LeaderOrReplica, || {
        get(super::job)
    }),
    r(Delete, "/v1/jobs/{name}", Write, Leader, || {
        delete(super::stop_job)
    }),
    r(Post, "/v1/jobs/{name}/delete", Write, Leader, || {
        post(super::delete_job)
    }),
    r(Post, "/v1/jobs/{name}/scale", Write, Leader, || {
        post(super::scale)
    }),
    r(Post, "/v1/jobs/{name}/restart", Write, Leader, || {
        post(super::restart_job)
    }),
    r(
        Get,
        "/v1/jobs/{name}/history",
        Read,
        LeaderOrReplica,
        || get(rollout::history),
    ),
    r(Post, "/v1/jobs/{name}/undo", Write, Leader, || {
        post(rollout::undo)
    }),
    r(Post, "/v1/nodes/{id}/drain", Write, Leader, || {
        post(rollout::drain)
    }),
    r(Post, "/v1/nodes/{id}/undrain", Write, Leader, || {
        post(rollout::undrain)
    }),
    r(Get, "/v1/allocs", Read, LeaderOrReplica, || {
        get(super::allocs)
    }),
    r(Post, "/v1/allocs/{id}/restart", Write, Leader, || {
        post(super::restart_alloc)
    }),
    r(Get, "/v1/allocs/{id}/logs", Read, Local, || get(logs::logs)),
    r(Get, "/v1/events", Read, Local, || get(monitor::events)),
    r(Get, "/v1/top", Read, Local, || get(monitor::top)),
    r(Get, "/metrics", Read, Local, || get(super::metrics)),
    r(Get, "/v1/services", Read, Local, || get(super::services)),
    r(Get, "/v1/services/{name}", Read, Local, || {
        get(super::service)
    }),
    r(Get, "/v1/registries", Read, LeaderOrReplica, || {
        get(images::registries)
    }),
    r(Post, "/v1/registries", Admin, Leader, || {
        post(images::login)
    }),
    r(Delete, "/v1/registries/{server}", Admin, Leader, || {
        delete(images::logout)
    }),
    r(Get, "/v1/images", Read, Local, || get(images::list)),
    // Sends what is in this node's own Docker.
    r(Post, "/v1/images/push", Write, Local, || post(images::push)),
    r(Get, "/v1/tokens", Admin, LeaderOrReplica, || {
        get(tokens::list)
    }),
    r(Post, "/v1/tokens", Admin, Leader, || post(tokens::create)),
    r(Delete, "/v1/tokens/{name}", Admin, Leader, || {
        delete(tokens::revoke)
    }),
    r(Get, "/", Public, Local, || get(dashboard::index)),
    r(Get, "/ui/app.js", Public, Local, || get(dashboard::app_js)),
    r(Get, "/ui/style.css", Public, Local, || {
        get(dashboard::style_css)
    }),
];

/// The routes of [`ROUTES`], without layers, fallback or state.
pub fn router() -> Router<Arc<NodeCtx>> {
    ROUTES.iter().fold(Router::new(), |router, route| {
        router.route(route.path, (route.handler)())
    })
}

/// The entry for `method` on the matched path `pattern`.
pub fn lookup(method: &Method, pattern: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.path == pattern && r.verb.matches(method))
}

/// Who may make this call; `pattern` is the path the router matched
/// (`None`: none did).
pub fn class_of(method: &Method, pattern: Option<&str>) -> Class {
    let by_method = Class::of_method(method);
    let Some(pattern) = pattern else {
        return by_method;
    };
    if let Some(route) = lookup(method, pattern) {
        return route.class;
    }
    ROUTES
        .iter()
        .filter(|r| r.path == pattern)
        .map(|r| r.class)
        .fold(by_method, Ord::max)
}

/// Where this call is served; what matched no entry is answered (404,
/// 405) where it arrives.
pub fn locality_of(method: &Method, pattern: Option<&str>) -> Locality {
    pattern
        .and_then(|p| lookup(method, p))
        .map_or(Locality::Local, |r| r.locality)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classes as `auth` decided them by path before the table, for
    /// concrete paths.
    fn old_need(method: &Method, path: &str) -> Option<TokenRole> {
        let read = method == Method::GET || method == Method::HEAD;
        if read && (path == "/" || path.starts_with("/ui/") || path == "/v1/status") {
            return None;
        }
        Some(if path == "/v1/tokens" || path.starts_with("/v1/tokens/") {
            TokenRole::Admin
        } else if read {
            TokenRole::Read
        } else if path == "/v1/registries" || path.starts_with("/v1/registries/") {
            TokenRole::Admin
        } else {
            TokenRole::Write
        })
    }

    /// What `forward` served locally before the table.
    fn old_local(method: &Method, path: &str) -> bool {
        (method == Method::POST && path == "/v1/images/push")
            || method == Method::GET
                && (path == "/v1/status"
                    || path == "/metrics"
                    || path == "/v1/nodes"
                    || path == "/v1/events"
                    || path == "/v1/top"
                    || path.starts_with("/v1/services")
                    || path == "/v1/images"
                    || path.ends_with("/logs")
                    || path == "/"
                    || path.starts_with("/ui/"))
    }

    fn concrete(pattern: &str) -> String {
        pattern
            .replace("{name}", "web")
            .replace("{id}", "abc")
            .replace("{server}", "docker.io")
    }

    fn method(v: Verb) -> Method {
        match v {
            Get => Method::GET,
            Post => Method::POST,
            Delete => Method::DELETE,
        }
    }

    #[test]
    fn every_route_keeps_its_class_and_locality() {
        for route in ROUTES {
            let m = method(route.verb);
            let path = concrete(route.path);
            assert_eq!(
                class_of(&m, Some(route.path)).role(),
                old_need(&m, &path),
                "{m} {path}"
            );
            let served_here = locality_of(&m, Some(route.path)) == Local;
            assert_eq!(served_here, old_local(&m, &path), "{m} {path}");
            if m == Method::GET {
                assert_eq!(
                    class_of(&Method::HEAD, Some(route.path)),
                    route.class,
                    "HEAD {path}"
                );
                // Reads never need the leader's lock step.
                assert_ne!(route.locality, Leader, "{path}");
            }
        }
    }

    #[test]
    fn each_method_and_path_has_one_entry() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(!(a.path == b.path && a.verb == b.verb), "{} twice", a.path);
            }
        }
        // The router takes them all (axum panics on conflicting routes).
        let _ = router();
    }

    #[test]
    fn unmatched_calls_need_at_least_their_methods_class() {
        assert_eq!(class_of(&Method::GET, None), Read);
        assert_eq!(class_of(&Method::POST, None), Write);
        // 405 on a known path: the strictest of the path and the method.
        assert_eq!(class_of(&Method::POST, Some("/v1/status")), Write);
        assert_eq!(class_of(&Method::PUT, Some("/v1/tokens")), Admin);
        assert_eq!(class_of(&Method::PUT, Some("/v1/registries")), Admin);
        assert_eq!(locality_of(&Method::PUT, Some("/v1/jobs")), Local);
        assert_eq!(locality_of(&Method::GET, None), Local);
    }
}
