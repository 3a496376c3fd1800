//! The HTTP layer: one module per area of the API. A handler is thin: it parses the
//! request, checks who asks, calls the domain modules or the store, and serializes the
//! answer. [`routes`] is the one table of every served (method, path): the router is
//! built from it and the OpenAPI test checks it (`paths`).

use std::sync::Arc;

use axum::routing::MethodRouter;

use crate::state::AppState;

pub mod accounts;
pub mod admin;
pub mod analytics;
pub mod bills;
pub mod dashboard;
pub mod ingest;
pub mod learning;
pub mod ops;
pub mod orgtree;

/// One served route: a method, a path and its handler.
#[derive(Debug)]
pub struct Route {
    /// Lower-case HTTP method, as OpenAPI spells it (`get`, `post`, ...).
    pub method: &'static str,
    /// Path, with `{param}` segments.
    pub path: &'static str,
    /// The handler, for this method only.
    pub handler: MethodRouter<Arc<AppState>>,
}

/// `table![get "/path" => handler, ...]`: the method name is both the OpenAPI method
/// and the `axum::routing` function, so the two cannot disagree.
macro_rules! table {
    ($($method:ident $path:literal => $handler:expr,)*) => {
        vec![$(Route {
            method: stringify!($method),
            path: $path,
            handler: axum::routing::$method($handler),
        },)*]
    };
}

/// Every route of the collector.
pub fn routes() -> Vec<Route> {
    table![
        get "/healthz" => ops::healthz,
        get "/readyz" => ops::readyz,
        get "/metrics" => ops::metrics,
        get "/openapi.json" => ops::openapi,
        post "/v1/usage" => ingest::ingest,
        get "/v1/admin/{kind}" => admin::list_units,
        post "/v1/admin/{kind}" => admin::create_unit,
        get "/v1/admin/keys" => admin::list_keys,
        post "/v1/admin/keys" => admin::create_key,
        post "/v1/admin/keys/{id}/rotate" => admin::rotate_key,
        post "/v1/admin/keys/{id}/revoke" => admin::revoke_key,
        get "/v1/admin/tokens" => admin::list_tokens,
        post "/v1/admin/tokens" => admin::create_token,
        post "/v1/admin/tokens/{id}/revoke" => admin::revoke_token,
        get "/v1/admin/audit" => admin::list_audit,
        get "/v1/admin/org-tree" => orgtree::get_org_tree,
        put "/v1/admin/org-tree" => orgtree::put_org_tree,
        get "/v1/admin/policies/{level}" => orgtree::get_policy,
        put "/v1/admin/policies/{level}" => orgtree::put_policy,
        delete "/v1/admin/policies/{level}" => orgtree::delete_policy,
        get "/v1/admin/budgets" => orgtree::list_budgets,
        post "/v1/admin/budgets" => orgtree::create_budget,
        delete "/v1/admin/budgets/{id}" => orgtree::delete_budget,
        get "/v1/admin/alerts" => orgtree::list_alerts,
        get "/v1/admin/bills" => bills::get_bill,
        get "/v1/admin/groups/{id}/members" => orgtree::list_members,
        post "/v1/admin/groups/{id}/members" => orgtree::add_member,
        delete "/v1/admin/groups/{id}/members/{user}" => orgtree::remove_member,
        get "/v1/admin/effective-policy" => orgtree::effective_policy,
        get "/v1/admin/orgs/{org}/routing" => learning::get_routing,
        put "/v1/admin/orgs/{org}/routing" => learning::put_routing,
        post "/v1/admin/orgs/{org}/routing/learn" => learning::post_learn,
        post "/v1/admin/orgs/{org}/routing/activate" => learning::post_activate,
        get "/v1/policy" => accounts::get_policy,
        post "/v1/reservations" => accounts::reserve,
        post "/v1/reservations/{id}/settle" => accounts::settle,
        get "/v1/analytics/{report}" => analytics::report,
        get "/" => ops::root,
        get "/dashboard" => dashboard::page,
        get "/dashboard/{asset}" => dashboard::asset,
        post "/dashboard/login" => dashboard::login,
        post "/dashboard/logout" => dashboard::logout,
        get "/dashboard/session" => dashboard::session,
    ]
}

/// Every served (method, path), in [`routes`] order: what `openapi.json` documents.
pub fn paths() -> Vec<(&'static str, &'static str)> {
    routes().into_iter().map(|r| (r.method, r.path)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_route_is_listed_twice() {
        let mut seen = std::collections::HashSet::new();
        for p in super::paths() {
            assert!(seen.insert(p), "{p:?} is listed twice");
        }
    }
}
