//! What an operator watches (issue 19), through the `api` binary as it is
//! run: metrics on their own listener (never the API's port), the outbox
//! gauges, traces exported over OTLP/HTTP to a receiver started here
//! (continuing the caller's `traceparent`, with a child span for the
//! transaction, and sent on to webhook receivers), JSON logs, and the
//! dashboard and alert rules naming only metrics that exist.
//!
//! Each test runs its own process (the metrics recorder is per process),
//! on the database under test (`TEST_DATABASE_URL`).

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde_json::{Value, json};
use service::testing::TestDb;

/// The `api` process, its key, its two addresses and its stderr lines.
struct Api {
    child: Child,
    key: String,
    graphql: String,
    api_base: String,
    metrics: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Api {
    async fn start(t: &TestDb, env: &[(&str, String)]) -> Api {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let workdir = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_api"));
        command
            .current_dir(workdir.path())
            .env("DATABASE_URL", &t.url)
            .env("SECRETS_KEY", t.secrets_key().to_base64())
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,sqlx=warn,tower_http=debug")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start the api binary");
        std::mem::forget(workdir);
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn({
            let tx = tx.clone();
            move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let line = line.trim();
                    if line.starts_with("ck_live_") {
                        let _ = tx.send(("key", line.to_owned()));
                    }
                    if let Some(u) = line.strip_prefix("GraphiQL: ") {
                        let _ = tx.send(("url", u.to_owned()));
                    }
                }
            }
        });
        let lines = Arc::new(Mutex::new(Vec::new()));
        std::thread::spawn({
            let lines = lines.clone();
            move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["message"] == "metrics listening"
                    {
                        let _ = tx.send(("metrics", v["addr"].as_str().unwrap().to_owned()));
                    }
                    lines.lock().unwrap().push(line);
                }
            }
        });
        let found = tokio::task::spawn_blocking(move || {
            let mut found = HashMap::new();
            while found.len() < 3 {
                let Ok((what, value)) = rx.recv_timeout(Duration::from_secs(60)) else {
                    break;
                };
                found.insert(what, value);
            }
            found
        })
        .await
        .unwrap();
        let graphql = found
            .get("url")
            .expect("the GraphiQL URL on stdout")
            .clone();
        Api {
            child,
            key: found.get("key").expect("a key on stdout").clone(),
            api_base: graphql.trim_end_matches("/graphql").to_owned(),
            graphql,
            metrics: found
                .get("metrics")
                .expect("a `metrics listening` log line")
                .parse()
                .unwrap(),
            stderr: lines,
        }
    }

    async fn gql(&self, query: &str, variables: Value, headers: &[(&str, &str)]) -> Value {
        let mut request = reqwest::Client::new()
            .post(&self.graphql)
            .bearer_auth(&self.key)
            .json(&json!({ "query": query, "variables": variables }));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    async fn ok(&self, query: &str, variables: Value) -> Value {
        let body = self.gql(query, variables, &[]).await;
        assert!(body.get("errors").is_none(), "{body}");
        body["data"].clone()
    }

    async fn scrape(&self) -> Scrape {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Scrape(text)
    }
}

/// A Prometheus text exposition.
struct Scrape(String);

impl Scrape {
    /// The value of the series `name{labels}` (labels as written, in any
    /// order), if present.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0.lines().find_map(|line| {
            if line.starts_with('#') {
                return None;
            }
            let (series, value) = line.rsplit_once(' ')?;
            let (n, l) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let have: Vec<&str> = l.split(',').filter(|s| !s.is_empty()).collect();
            let want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            (have.len() == want.len() && want.iter().all(|w| have.contains(&w.as_str())))
                .then(|| value.parse().unwrap())
        })
    }

    /// Every metric family named in the exposition.
    fn names(&self) -> Vec<String> {
        self.0
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }
}

const SETUP: &str = r#"mutation($url: String!) {
  createCreditSystem(input: {key: "tokens", name: "Tokens", unitSingular: "token", unitPlural: "tokens", precision: 0}) { creditSystem { id } }
  createCustomer(input: {externalId: "acme", name: "Acme", email: "billing@acme.test"}) { customer { id } }
  createWebhookEndpoint(input: {url: $url, events: ["credits.granted"]}) { endpoint { id } }
}"#;
const GRANT: &str = r#"mutation { grantCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "tokens"}, amount: "10", category: PROMOTIONAL, reason: "trial", idempotencyKey: "g1"}) { entry { id } } }"#;
const CONSUME: &str = r#"mutation($amount: String!, $key: String!) { consumeCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "tokens"}, amount: $amount, idempotencyKey: $key}) { entry { id } } }"#;

/// Requests a local receiver got: headers of each.
type Seen = Arc<Mutex<Vec<HeaderMap>>>;

/// A webhook receiver that fails every attempt (500).
async fn failing_receiver() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(|State(seen): State<Seen>, headers: HeaderMap| async move {
                seen.lock().unwrap().push(headers);
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down")
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// A span as the OTLP receiver got it (ids in hex).
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    attributes: HashMap<String, String>,
}

type Spans = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP receiver: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`.
async fn otlp_receiver() -> (SocketAddr, Spans) {
    let spans: Spans = Arc::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(|State(spans): State<Spans>, body: Bytes| async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut got = spans.lock().unwrap();
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        for s in scope.spans {
                            got.push(Span {
                                trace_id: hex::encode(&s.trace_id),
                                span_id: hex::encode(&s.span_id),
                                parent_span_id: hex::encode(&s.parent_span_id),
                                name: s.name,
                                attributes: s
                                    .attributes
                                    .into_iter()
                                    .map(|kv| {
                                        let v = kv.value.and_then(|v| v.value).map(|v| {
                                            use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
                                            match v {
                                                V::StringValue(s) => s,
                                                other => format!("{other:?}"),
                                            }
                                        });
                                        (kv.key, v.unwrap_or_default())
                                    })
                                    .collect(),
                            });
                        }
                    }
                }
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }),
        )
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, spans)
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The scripted workload: a grant, three consumes, an
/// INSUFFICIENT_CREDITS, a webhook to a receiver that fails — then the
/// scrape shows exactly those, the API port has no `/metrics`, the OTLP
/// receiver has the consume's span in the caller's trace with a
/// transaction under it, the webhook carried a `traceparent`, every log
/// line is JSON and the request's lines carry its trace id.
#[tokio::test]
async fn a_workload_shows_in_metrics_traces_and_logs() {
    let t = TestDb::unmigrated().await;
    let (hook, hooks_seen) = failing_receiver().await;
    let (otlp, spans) = otlp_receiver().await;
    let api = Api::start(
        &t,
        &[
            ("WORKER", "embedded".into()),
            ("WEBHOOK_ALLOW_PRIVATE", "true".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    )
    .await;

    api.ok(SETUP, json!({ "url": format!("http://{hook}/hook") }))
        .await;
    api.ok(GRANT, json!({})).await;
    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    for i in 0..3 {
        let body = api
            .gql(
                CONSUME,
                json!({ "amount": "2", "key": format!("c{i}") }),
                &[("traceparent", &traceparent)],
            )
            .await;
        assert!(body.get("errors").is_none(), "{body}");
    }
    let refused = api
        .gql(CONSUME, json!({ "amount": "100", "key": "too-much" }), &[])
        .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"],
        "INSUFFICIENT_CREDITS"
    );

    // The worker delivers credits.granted; the receiver fails it.
    eventually("the webhook attempt", async || {
        (!hooks_seen.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    let scrape = eventually("the attempt in the metrics", async || {
        let s = api.scrape().await;
        (s.value(
            "credits_webhook_deliveries_total",
            &[("outcome", "retrying")],
        ) == Some(1.0))
        .then_some(s)
    })
    .await;

    let ops = "credits_graphql_requests_total";
    assert_eq!(
        scrape.value(ops, &[("operation", "consumeCredits"), ("outcome", "ok")]),
        Some(3.0)
    );
    assert_eq!(
        scrape.value(
            ops,
            &[
                ("operation", "consumeCredits"),
                ("outcome", "INSUFFICIENT_CREDITS")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(ops, &[("operation", "grantCredits"), ("outcome", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(ops, &[("operation", "createCustomer"), ("outcome", "ok")]),
        Some(1.0)
    );
    let latency = "credits_graphql_request_duration_seconds";
    assert_eq!(
        scrape.value(
            &format!("{latency}_count"),
            &[("operation", "consumeCredits")]
        ),
        Some(4.0)
    );
    assert!(
        scrape
            .value(
                &format!("{latency}_sum"),
                &[("operation", "consumeCredits")]
            )
            .unwrap()
            > 0.0
    );
    assert_eq!(
        scrape.value(
            &format!("{latency}_bucket"),
            &[("operation", "consumeCredits"), ("le", "+Inf")]
        ),
        Some(4.0)
    );
    let entries = "credits_ledger_entries_total";
    assert_eq!(scrape.value(entries, &[("type", "GRANT")]), Some(1.0));
    assert_eq!(scrape.value(entries, &[("type", "USAGE")]), Some(3.0));
    assert_eq!(scrape.value(entries, &[("type", "EXPIRY")]), None);
    for outcome in ["delivered", "failed"] {
        assert_eq!(
            scrape.value("credits_webhook_deliveries_total", &[("outcome", outcome)]),
            Some(0.0),
            "{outcome}"
        );
    }
    assert_eq!(
        scrape.value("credits_webhook_delivery_duration_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(scrape.value("credits_outbox_pending", &[]), Some(0.0));
    let pool = if t.is_postgres() { "main" } else { "write" };
    assert!(
        scrape
            .value(
                "credits_db_pool_connections",
                &[("pool", pool), ("state", "idle")]
            )
            .is_some()
    );
    assert!(
        scrape
            .value("credits_db_pool_acquire_duration_seconds_count", &[])
            .unwrap()
            >= 5.0
    );
    assert_eq!(
        scrape.value("credits_rate_limited_total", &[("limit", "api-key")]),
        Some(0.0)
    );

    // The API's port does not serve metrics.
    let on_api = reqwest::get(format!("{}/metrics", api.api_base))
        .await
        .unwrap();
    assert_eq!(on_api.status(), 404);

    // The webhook carried the delivery's trace context.
    let header = hooks_seen.lock().unwrap()[0]
        .get("traceparent")
        .expect("a traceparent on the webhook")
        .to_str()
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = header.split('-').collect();
    assert_eq!((parts.len(), parts[0]), (4, "00"), "{header}");
    assert!(
        parts[1].len() == 32 && parts[1] != "0".repeat(32),
        "{header}"
    );

    // The consume's spans reached the OTLP receiver in the caller's trace.
    let (operation, transaction) = eventually("the consume's spans", async || {
        let spans = spans.lock().unwrap();
        let op = spans.iter().find(|s| {
            s.trace_id == TRACE_ID
                && s.attributes.get("graphql.operation").map(String::as_str)
                    == Some("consumeCredits")
        })?;
        let txn = spans
            .iter()
            .find(|s| s.name == "db.transaction" && s.parent_span_id == op.span_id)?;
        Some((op.clone(), txn.clone()))
    })
    .await;
    assert_eq!(operation.name, "graphql consumeCredits");
    assert_eq!(transaction.trace_id, TRACE_ID);
    assert!(
        operation.attributes.contains_key("tenant_id"),
        "{operation:?}"
    );
    assert!(operation.attributes.contains_key("key_id"), "{operation:?}");
    // Never a secret or an argument.
    for value in operation.attributes.values() {
        assert!(
            !value.contains("ck_live_") && !value.contains("too-much"),
            "{value}"
        );
    }
    // The HTTP request's span continues the caller's (its parent is the
    // caller's span id).
    assert!(
        spans
            .lock()
            .unwrap()
            .iter()
            .any(|s| { s.trace_id == TRACE_ID && s.parent_span_id == "00f067aa0ba902b7" })
    );

    // Every log line is JSON; the consume requests' lines carry the trace id.
    let lines = api.stderr.lock().unwrap().clone();
    assert!(!lines.is_empty());
    let mut traced = 0;
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(v.get(key).is_some(), "{key} in {line}");
        }
        let in_request = v["spans"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "http.request"));
        if in_request {
            let trace_id = v["spans"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|s| s["trace_id"].as_str())
                .unwrap_or_else(|| panic!("a trace id in {line}"));
            assert_eq!(trace_id.len(), 32, "{line}");
            if trace_id == TRACE_ID {
                traced += 1;
            }
        }
    }
    // tower_http's request and response lines, for each of the three.
    assert!(traced >= 6, "{traced} lines with the caller's trace id");
}

/// The outbox gauges rise while nothing dispatches (no worker) and fall to
/// 0 once the outbox is dispatched.
#[tokio::test]
async fn outbox_gauges_rise_while_held_back_and_fall_after() {
    let t = TestDb::unmigrated().await;
    let api = Api::start(&t, &[("WORKER", "off".into())]).await;
    api.ok(SETUP, json!({ "url": "https://hooks.example.com/credits" }))
        .await;
    let before = api.scrape().await;
    assert_eq!(before.value("credits_outbox_pending", &[]), Some(0.0));
    assert_eq!(
        before.value("credits_outbox_oldest_pending_age_seconds", &[]),
        Some(0.0)
    );

    api.ok(GRANT, json!({})).await;
    let body = api
        .gql(CONSUME, json!({ "amount": "10", "key": "all" }), &[])
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let held = api.scrape().await;
    let pending = held.value("credits_outbox_pending", &[]).unwrap();
    assert!(pending >= 1.0, "{pending}");
    let age = held
        .value("credits_outbox_oldest_pending_age_seconds", &[])
        .unwrap();
    assert!((1.0..60.0).contains(&age), "{age}");

    // What the worker does: dispatch the outbox (until it is empty: a
    // dispatch may add events of its own).
    let db = t.connect_again().await;
    let mut dispatched = 0;
    for _ in 0..10 {
        let n = service::notifications::dispatch::dispatch(&db, &service::SystemClock, 1000)
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        dispatched += n;
    }
    assert!(dispatched as f64 >= pending, "{dispatched} dispatched");
    let after = api.scrape().await;
    assert_eq!(after.value("credits_outbox_pending", &[]), Some(0.0));
    assert_eq!(
        after.value("credits_outbox_oldest_pending_age_seconds", &[]),
        Some(0.0)
    );
}

/// The dashboard and the alert rules parse, and every metric they name is
/// one a scrape serves.
#[tokio::test]
async fn dashboard_and_alerts_name_only_served_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("ops/grafana/credits-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root.join("ops/prometheus/alerts.yml")).unwrap(),
    )
    .expect("the alert rules are YAML");

    // Expressions: the dashboard's targets, the rules' `expr`.
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("a target's expr").to_owned());
        }
    }
    assert!(exprs.len() >= 8, "{} dashboard queries", exprs.len());
    let mut alerts = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("an alert name");
            assert!(rule["annotations"]["summary"].as_str().is_some(), "{name}");
            alerts.push(name.to_owned());
            exprs.push(rule["expr"].as_str().expect("an alert's expr").to_owned());
        }
    }
    assert_eq!(alerts.len(), 4, "{alerts:?}");

    // The metric families a process serves (described, or recorded once).
    let served: Vec<&str> = service::metrics::ALL.iter().map(|(n, _)| *n).collect();
    let mut named = 0;
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("credits_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| served.contains(f))
                .unwrap_or(name);
            assert!(
                served.contains(&family),
                "{name} in {expr} is not a served metric"
            );
            named += 1;
            rest = &tail[end..];
        }
    }
    assert!(named >= exprs.len());

    // And a real scrape serves each family the dashboard and rules rely
    // on once the engine has done a little of everything.
    let t = TestDb::unmigrated().await;
    let api = Api::start(&t, &[("WORKER", "embedded".into())]).await;
    api.ok(SETUP, json!({ "url": "https://hooks.example.com/credits" }))
        .await;
    api.ok(GRANT, json!({})).await;
    let scrape = eventually("the jobs' first runs", async || {
        let s = api.scrape().await;
        s.value(
            "credits_job_last_success_timestamp_seconds",
            &[("job", "expiry_sweep")],
        )
        .is_some()
        .then_some(s)
    })
    .await;
    let names = scrape.names();
    for family in served {
        if family == service::metrics::WEBHOOK_DELIVERY_DURATION {
            continue; // only once a webhook was attempted (the first test)
        }
        assert!(
            names.iter().any(|n| n == family),
            "{family} not in a scrape:\n{}",
            scrape.0
        );
    }
}

/// METRICS_ADDR unset and its default port taken (a second API on the
/// host, another test): the API starts without a metrics listener and says
/// so; an address asked for and taken fails the start.
#[tokio::test]
async fn a_taken_metrics_port_warns_by_default_and_fails_when_asked_for() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let t = TestDb::unmigrated().await;
    // Taken: by this listener, or by whoever holds it already.
    let _held = std::net::TcpListener::bind("127.0.0.1:9464");
    let start = |metrics_addr: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_api"));
        command
            .current_dir(std::env::temp_dir())
            .env("DATABASE_URL", &t.url)
            .env("SECRETS_KEY", t.secrets_key().to_base64())
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env(
                "MAIL_DIR",
                std::env::temp_dir().join("credits-observability-mail"),
            )
            .env("WORKER", "off")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .env_remove("METRICS_ADDR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(addr) = metrics_addr {
            command.env("METRICS_ADDR", addr);
        }
        command.spawn().expect("start the api binary")
    };

    let mut child = start(None);
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let readers = tokio::task::spawn_blocking(move || {
        let out = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .any(|l| l.starts_with("GraphiQL: "))
        });
        let warned = BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("no metrics listener"));
        (warned, out.join().unwrap())
    });
    // The API serves; then stop it so the readers end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = child.kill();
    let _ = child.wait();
    let (warned, graphiql) = readers.await.unwrap();
    assert!(graphiql, "the API started");
    assert!(warned, "a warning names the missing metrics listener");

    let mut child = start(Some("127.0.0.1:9464"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the API should refuse to start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success());
}

/// A request refused by a rate limit (429) counts in
/// `credits_rate_limited_total` under its bucket.
#[tokio::test]
async fn a_refused_request_counts_as_rate_limited() {
    let t = TestDb::unmigrated().await;
    let api = Api::start(
        &t,
        &[
            ("WORKER", "off".into()),
            ("RATE_LIMIT_API_KEY", "1/min,burst=2".into()),
        ],
    )
    .await;
    let before = api.scrape().await;
    assert_eq!(
        before.value("credits_rate_limited_total", &[("limit", "api-key")]),
        Some(0.0)
    );
    let mut limited = 0;
    for _ in 0..4 {
        let body = api.gql("{ viewer { role } }", json!({}), &[]).await;
        if body["errors"][0]["extensions"]["code"] == "RATE_LIMITED" {
            limited += 1;
        }
    }
    assert!(limited >= 2, "{limited} refused");
    let after = api.scrape().await;
    assert_eq!(
        after.value("credits_rate_limited_total", &[("limit", "api-key")]),
        Some(f64::from(limited))
    );
    assert_eq!(
        after.value("credits_rate_limited_total", &[("limit", "auth-failures")]),
        Some(0.0)
    );
}
