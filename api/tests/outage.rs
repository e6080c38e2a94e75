//! The database goes away and comes back (issue 14, item 3): requests are
//! answered `UNAVAILABLE` (HTTP 503, `retryable`) within 3 s, `/readyz`
//! within 1 s, and the server recovers without a restart.
//!
//! PostgreSQL: the API reaches the database through a TCP proxy in this
//! test that can drop every connection and swallow new ones (a network
//! partition — the slow case: nothing refuses, nothing answers). SQLite:
//! the database is a file in the process; its outage is another process
//! keeping the file's write lock (below), and a full disk
//! (`service/tests/durability.rs`).

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use api::http::HttpLimits;
use serde_json::{Value, json};
use service::{Db, FixedClock, db::DbConfig, testing::TestDb};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// Forwards to PostgreSQL while up; while down, drops every open
/// connection and holds new ones without answering.
struct Partition {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Partition {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let links = Arc::new(Mutex::new(Vec::new()));
        let (up2, links2) = (up.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let up = up2.clone();
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if !up.load(Ordering::SeqCst) {
                        // Swallowed: held open, never answered.
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                links2.lock().unwrap().push(link);
            }
        });
        Self { addr, up, links }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn heal(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_lost_database_is_reported_fast_and_recovered_from() {
    common::install_tls_provider();
    let t = TestDb::new().await;
    if !t.is_postgres() {
        // See the module doc: a partition needs a database across a network.
        return;
    }
    let clock = FixedClock::new(chrono::Utc::now());
    let (tenant, key) = service::tenants::bootstrap(&t.db, &clock)
        .await
        .unwrap()
        .unwrap();
    let _ = tenant;
    // The same database, reached through the proxy.
    let url: url_parts::Url = url_parts::Url::parse(&t.url);
    let partition = Partition::start(url.host_port()).await;
    let db = Db::connect(&DbConfig::new(
        url.with_host_port(&partition.addr.to_string()),
    ))
    .await
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let limits = HttpLimits::default();
    let app = api::server::app_with_limits(db, Arc::new(clock.clone()), limits.clone());
    tokio::spawn(api::http::serve::serve(
        listener,
        app,
        limits,
        shutdown.clone().cancelled_owned(),
    ));
    let client = reqwest::Client::new();
    let viewer = || {
        client
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(&key.secret)
            .json(&json!({"query": "{ viewer { role } creditSystems(first: 1) { edges { node { id } } } }"}))
            .send()
    };
    let ready = || client.get(format!("http://{addr}/readyz")).send();
    assert_eq!(viewer().await.unwrap().status(), 200);
    assert_eq!(ready().await.unwrap().status(), 200);

    partition.cut();
    let started = Instant::now();
    let resp = viewer().await.unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAVAILABLE",
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["retryable"], true, "{body}");
    assert!(took < Duration::from_secs(4), "UNAVAILABLE after {took:?}");
    let started = Instant::now();
    assert_eq!(ready().await.unwrap().status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "/readyz after {:?}",
        started.elapsed()
    );

    partition.heal();
    // Recovery without a restart: the pool makes new connections.
    let mut recovered = false;
    for _ in 0..50 {
        if viewer().await.unwrap().status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "the API did not recover after the database came back"
    );
    assert_eq!(ready().await.unwrap().status(), 200);
    shutdown.cancel();
}

/// Just enough URL handling for `postgres://user@host:port/db`.
mod url_parts {
    pub struct Url {
        scheme_user: String,
        host_port: String,
        rest: String,
    }

    impl Url {
        pub fn parse(url: &str) -> Self {
            let (before, after) = url.split_once('@').expect("postgres://user@host:port/db");
            let (host_port, rest) = after.split_at(after.find('/').unwrap_or(after.len()));
            Self {
                scheme_user: before.to_owned(),
                host_port: host_port.to_owned(),
                rest: rest.to_owned(),
            }
        }

        pub fn host_port(&self) -> String {
            self.host_port.clone()
        }

        pub fn with_host_port(&self, host_port: &str) -> String {
            format!("{}@{host_port}{}", self.scheme_user, self.rest)
        }
    }
}

/// SQLite's outage: the file is there but another process holds its write
/// lock and does not let go (a stuck tool, a crashed-but-not-dead
/// process). Writes are answered `UNAVAILABLE` (503, `retryable`) within
/// 3 s instead of hanging; reads and `/readyz` go on (WAL readers don't
/// wait for writers); once the lock is released the retry with the same
/// key applies, without a restart. (A full disk is
/// `service/tests/durability.rs`.)
#[tokio::test]
async fn a_locked_sqlite_file_is_reported_fast_and_recovered_from() {
    use sea_orm::sqlx::{Connection, sqlite::SqliteConnection};
    let app = common::TestApp::spawn().await;
    if app.t.is_postgres() {
        return;
    }
    let create = r#"mutation { createCustomer(input: {externalId: "late", name: "Late"}) { customer { externalId } } }"#;
    let mut other = SqliteConnection::connect(&app.t.url).await.unwrap();
    sea_orm::sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();

    let started = Instant::now();
    let (status, body) = app.gql(Some(&app.admin_key), create, json!({})).await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAVAILABLE",
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["retryable"], true, "{body}");
    assert!(
        took < Duration::from_secs(3) + Duration::from_millis(500),
        "UNAVAILABLE after {took:?}"
    );
    // Reads and readiness go on.
    let (status, body) = app
        .gql(Some(&app.admin_key), "{ viewer { role } }", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    let ready = reqwest::get(app.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));

    sea_orm::sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .unwrap();
    other.close().await.unwrap();
    let data = app.ok(&app.admin_key, create, json!({})).await;
    assert_eq!(data["createCustomer"]["customer"]["externalId"], "late");
}
