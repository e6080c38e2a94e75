//! A real server on 127.0.0.1:0 over a fresh test database, and a client.
#![allow(dead_code)]

pub mod browser;

use std::{net::SocketAddr, sync::Arc};

use api::http::HttpLimits;
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use service::{
    FixedClock,
    api_keys::{self, Role},
    tenants,
    testing::TestDb,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct TestApp {
    pub addr: SocketAddr,
    pub t: TestDb,
    pub clock: FixedClock,
    pub tenant_id: Uuid,
    /// An ADMIN key of the `default` tenant.
    pub admin_key: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
}

impl TestApp {
    pub async fn spawn() -> Self {
        install_tls_provider();
        let t = TestDb::new().await;
        let clock = FixedClock::new(Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap());
        let (tenant, key) = tenants::bootstrap(&t.db, &clock).await.unwrap().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        serve(
            listener,
            t.db.clone(),
            &clock,
            HttpLimits::default(),
            &shutdown,
        );
        Self {
            addr,
            t,
            clock,
            tenant_id: tenant.id,
            admin_key: key.secret,
            client: reqwest::Client::new(),
            shutdown,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a GraphQL request; returns the HTTP status and the JSON body.
    pub async fn gql(&self, key: Option<&str>, query: &str, variables: Value) -> (u16, Value) {
        let mut req = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// A GraphQL request that must succeed: returns `data`.
    pub async fn ok(&self, key: &str, query: &str, variables: Value) -> Value {
        let (status, body) = self.gql(Some(key), query, variables).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// A key of another role for the same tenant.
    pub async fn key(&self, role: Role) -> String {
        api_keys::create(&self.t.db, &self.clock, self.tenant_id, role, "test")
            .await
            .unwrap()
            .secret
    }

    /// A second tenant with its own ADMIN key.
    pub async fn other_tenant(&self, name: &str) -> (Uuid, String) {
        let tenant = tenants::create(&self.t.db, &self.clock, name)
            .await
            .unwrap();
        let key = api_keys::create(&self.t.db, &self.clock, tenant.id, Role::Admin, "")
            .await
            .unwrap();
        (tenant.id, key.secret)
    }
}

impl TestApp {
    /// Every wallet of every tenant keeps the ledger's invariants.
    pub async fn verify_all(&self) {
        use sea_orm::EntityTrait;
        let wallets = entity::wallet::Entity::find()
            .all(self.t.db.reader())
            .await
            .unwrap();
        for w in wallets {
            let problems = service::ledger::audit::verify_wallet(
                self.t.db.reader(),
                w.tenant_id,
                service::ids::WalletId::from_uuid(w.id),
            )
            .await
            .unwrap();
            assert!(problems.is_empty(), "wallet {}: {problems:#?}", w.id);
        }
    }

    /// Restarts the server on a database handle that counts statements.
    pub async fn count_statements(&mut self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.shutdown.cancel();
        let mut db = self.t.db.clone();
        let counter = db.count_statements();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.addr = listener.local_addr().unwrap();
        self.shutdown = CancellationToken::new();
        serve(
            listener,
            db,
            &self.clock,
            HttpLimits::default(),
            &self.shutdown,
        );
        counter
    }

    /// Restarts the server with other limits (timeouts, caps).
    pub async fn restart_with(&mut self, limits: HttpLimits) {
        self.shutdown.cancel();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.addr = listener.local_addr().unwrap();
        self.shutdown = CancellationToken::new();
        serve(
            listener,
            self.t.db.clone(),
            &self.clock,
            limits,
            &self.shutdown,
        );
    }
}

impl TestApp {
    /// Restarts the server as `WEBHOOK_ALLOW_PRIVATE=true` runs it
    /// (development: private webhook targets allowed).
    pub async fn restart_allowing_private_webhooks(&mut self) {
        self.shutdown.cancel();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.addr = listener.local_addr().unwrap();
        self.shutdown = CancellationToken::new();
        let limits = HttpLimits::default();
        let app = api::server::app_with(
            self.t.db.clone(),
            Arc::new(self.clock.clone()),
            limits.clone(),
            service::notifications::TargetPolicy::AllowPrivate,
        );
        tokio::spawn(api::http::serve::serve(
            listener,
            app,
            limits,
            self.shutdown.clone().cancelled_owned(),
        ));
    }
}

/// The application served as `api serve` serves it (connection limits and
/// timeouts included).
fn serve(
    listener: tokio::net::TcpListener,
    db: service::Db,
    clock: &FixedClock,
    limits: HttpLimits,
    shutdown: &CancellationToken,
) {
    let app = api::server::app_with_limits(db, Arc::new(clock.clone()), limits.clone());
    tokio::spawn(api::http::serve::serve(
        listener,
        app,
        limits,
        shutdown.clone().cancelled_owned(),
    ));
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// reqwest is built with `rustls-no-provider` (the worker's feature, unified
/// across the workspace): test clients need the process's provider too.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The `extensions.code` of the first error.
pub fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

/// The `extensions.field` of the first error.
pub fn field(body: &Value) -> &str {
    body["errors"][0]["extensions"]["field"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field in {body}"))
}

impl TestApp {
    /// Restarts the server with rate limits, as `api serve` runs it
    /// (`app_with_rate_limits`; the default limits otherwise).
    pub async fn restart_with_rate_limits(&mut self, rate_limits: api::http::throttle::RateLimits) {
        self.shutdown.cancel();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.addr = listener.local_addr().unwrap();
        self.shutdown = CancellationToken::new();
        let limits = HttpLimits::default();
        let app = api::server::app_with_rate_limits(
            self.t.db.clone(),
            Arc::new(self.clock.clone()),
            limits.clone(),
            service::notifications::TargetPolicy::PublicOnly,
            &rate_limits,
        );
        tokio::spawn(api::http::serve::serve(
            listener,
            app,
            limits,
            self.shutdown.clone().cancelled_owned(),
        ));
    }
}
