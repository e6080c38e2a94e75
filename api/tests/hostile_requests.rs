//! Hostile requests (issue 13, items 1–5 and 8): nothing a caller with a
//! valid credential sends can crash, starve or confuse the server. Each
//! case asserts the HTTP status, the error code, that nothing was written
//! and that the server still answers. Runs on SQLite and, with
//! `TEST_DATABASE_URL`, on PostgreSQL.

mod common;

use common::TestApp;
use serde_json::{Value, json};
use service::api_keys::Role;

const GRJ: &str = "application/graphql-response+json";

/// A raw POST: body as given, headers as given (plus the credential).
async fn post(
    app: &TestApp,
    key: &str,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, String, Value) {
    let mut req = reqwest::Client::new()
        .post(app.url("/graphql"))
        .bearer_auth(key)
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let media = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("not JSON ({status}, {media}): {:.200}", text));
    (status, media, body)
}

fn query_body(query: &str) -> String {
    json!({ "query": query }).to_string()
}

async fn setup(app: &TestApp) -> String {
    app.ok(
        &app.admin_key,
        r#"mutation {
          createCreditSystem(input: {key: "photos", name: "Photos", unitSingular: "photo", unitPlural: "photos", precision: 0}) { creditSystem { id } }
          p: createCustomer(input: {externalId: "partner", name: "Partner"}) { customer { id } }
          c: createCustomer(input: {externalId: "client", name: "Client", parent: {externalId: "partner"}}) { customer { id } }
          grantCredits(input: {customer: {externalId: "partner"}, creditSystem: {key: "photos"}, amount: "100", category: PURCHASED, reason: "r", idempotencyKey: "g"}) { grant { id } }
        }"#,
        json!({}),
    )
    .await;
    let data = app
        .ok(
            &app.admin_key,
            r#"mutation { createCustomerToken(customer: {externalId: "partner"}, ttlSeconds: 600, includeDescendants: true) { token } }"#,
            json!({}),
        )
        .await;
    data["createCustomerToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Rows that a hostile request must not have added.
async fn row_counts(app: &TestApp) -> (u64, u64, u64) {
    use sea_orm::{EntityTrait, PaginatorTrait};
    let db = app.t.db.reader();
    (
        entity::customer::Entity::find().count(db).await.unwrap(),
        entity::ledger_entry::Entity::find()
            .count(db)
            .await
            .unwrap(),
        entity::credit_grant::Entity::find()
            .count(db)
            .await
            .unwrap(),
    )
}

async fn still_up(app: &TestApp) {
    let resp = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(resp.status(), 200);
}

fn nest(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

/// 10⁵ levels of every construct, and a few thousand (under the size
/// bound, so the nesting bound is what refuses them).
fn deep_documents() -> Vec<(String, String, &'static str)> {
    let mut cases = Vec::new();
    for (n, measure) in [(100_000, "bytes"), (3_000, "nesting")] {
        cases.push((
            format!("list {n}"),
            format!(
                "{{ customers(search: {}) {{ edges {{ node {{ id }} }} }} }}",
                nest("[", "\"x\"", "]", n)
            ),
            measure,
        ));
        cases.push((
            format!("object {n}"),
            format!(
                "{{ customers(search: {}) {{ edges {{ node {{ id }} }} }} }}",
                nest("{a:", "1", "}", n)
            ),
            measure,
        ));
        cases.push((
            format!("selection set {n}"),
            nest("{ a ", "", "}", n),
            measure,
        ));
        cases.push((
            format!("directive argument {n}"),
            format!(
                "{{ __typename @include(if: {}) }}",
                nest("[", "true", "]", n)
            ),
            measure,
        ));
    }
    // A fragment chain: 10⁵ fragments is over the body limit (413, below);
    // 1,000 fragments fit in the document and hit the fragment bound; 60
    // fragments each nesting one field hit the depth bound.
    let chain = |n: usize, field: bool| {
        let mut q = String::from("{ ...F0 }");
        for i in 0..n {
            if field {
                q.push_str(&format!(
                    " fragment F{i} on Customer {{ parent {{ ...F{} }} }}",
                    i + 1
                ));
            } else {
                q.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
            }
        }
        q.push_str(&format!(" fragment F{n} on Query {{ __typename }}"));
        q
    };
    cases.push((
        "fragment chain 1000".into(),
        chain(1_000, false),
        "fragments",
    ));
    cases.push((
        "fragment chain into depth".into(),
        format!(
            "{{ customer(externalId: \"x\") {{ ...F0 }} }}{}",
            chain(60, true).trim_start_matches("{ ...F0 }")
        ),
        "depth",
    ));
    cases.push((
        "fragment cycle".into(),
        "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }".into(),
        "fragmentCycle",
    ));
    cases.push((
        "tokens".into(),
        format!("{{ {} }}", "a ".repeat(10_001)),
        "tokens",
    ));
    cases
}

#[tokio::test]
async fn deep_and_large_documents_are_refused_before_parsing() {
    let app = TestApp::spawn().await;
    let token = setup(&app).await;
    let read = app.key(Role::Read).await;
    let before = row_counts(&app).await;
    for (name, query, measure) in deep_documents() {
        for key in [&read, &token] {
            // application/graphql-response+json: a request error is 400.
            let (status, media, body) = post(
                &app,
                key,
                Some("application/json"),
                Some(GRJ),
                query_body(&query),
            )
            .await;
            let ext = &body["errors"][0]["extensions"];
            assert_eq!(
                (status, ext["code"].as_str(), ext["measure"].as_str()),
                (400, Some("QUERY_TOO_COMPLEX"), Some(measure)),
                "{name}: {body:.300}"
            );
            assert!(media.starts_with(GRJ), "{name}: {media}");
            assert!(body.get("data").is_none(), "{name}: {body:.300}");
            // application/json: the same error, HTTP 200.
            let (status, _, body) = post(
                &app,
                key,
                Some("application/json"),
                Some("application/json"),
                query_body(&query),
            )
            .await;
            assert_eq!(status, 200, "{name}");
            assert_eq!(body["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX");
            still_up(&app).await;
        }
    }
    // Variables nested 10⁵ deep are refused as JSON, before GraphQL.
    let vars = format!(
        "{{\"query\": \"query($s: String) {{ customers(search: $s) {{ edges {{ node {{ id }} }} }} }}\", \"variables\": {{\"s\": {}}}}}",
        nest("[", "1", "]", 100_000)
    );
    let (status, _, body) = post(&app, &read, Some("application/json"), Some(GRJ), vars).await;
    assert_eq!(
        (status, body["errors"][0]["extensions"]["code"].as_str()),
        (400, Some("BAD_REQUEST"))
    );
    // A fragment chain of 10⁵ is larger than the body bound.
    let mut huge = String::from("{ ...F0 }");
    for i in 0..100_000 {
        huge.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
    }
    let (status, _, body) = post(
        &app,
        &read,
        Some("application/json"),
        Some(GRJ),
        query_body(&huge),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["extensions"]["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE"))
    );
    assert_eq!(row_counts(&app).await, before, "nothing was written");
    still_up(&app).await;
}

#[tokio::test]
async fn malformed_requests_are_json_errors_with_codes() {
    let app = TestApp::spawn().await;
    let key = app.key(Role::Write).await;
    let before = row_counts(&app).await;
    let mutation =
        r#"mutation { createCustomer(input: {externalId: "m", name: "M"}) { customer { id } } }"#;
    // (case, Content-Type, Accept, body, HTTP status, code)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "bad JSON",
            Some("application/json"),
            Some(GRJ),
            b"{ \"not a JSON".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "bad JSON, application/json",
            Some("application/json"),
            None,
            b"{ \"not a JSON".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "batch",
            Some("application/json"),
            None,
            format!("[{}]", query_body(mutation)).into_bytes(),
            400,
            "BAD_REQUEST",
        ),
        (
            "no content type",
            None,
            None,
            query_body(mutation).into_bytes(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "text/plain",
            Some("text/plain"),
            None,
            query_body(mutation).into_bytes(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "latin-1",
            Some("application/json; charset=latin1"),
            None,
            query_body(mutation).into_bytes(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "not acceptable",
            Some("application/json"),
            Some("text/html"),
            query_body(mutation).into_bytes(),
            406,
            "NOT_ACCEPTABLE",
        ),
        (
            "query not a string",
            Some("application/json"),
            None,
            br#"{"query": {"a": 1}}"#.to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "variables not a map",
            Some("application/json"),
            None,
            br#"{"query": "{ __typename }", "variables": "x"}"#.to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "empty body",
            Some("application/json"),
            None,
            Vec::new(),
            400,
            "BAD_REQUEST",
        ),
        (
            "2 MiB body",
            Some("application/json"),
            None,
            format!("{{\"query\": \"{}\"}}", " ".repeat(2 << 20)).into_bytes(),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "syntax",
            Some("application/json"),
            Some(GRJ),
            query_body("{").into_bytes(),
            400,
            "VALIDATION",
        ),
        (
            "unknown field",
            Some("application/json"),
            Some(GRJ),
            query_body("{ nope }").into_bytes(),
            400,
            "VALIDATION",
        ),
        (
            "unknown field, application/json",
            Some("application/json"),
            None,
            query_body("{ nope }").into_bytes(),
            200,
            "VALIDATION",
        ),
    ];
    for (name, ct, accept, body, status, code) in cases {
        let (got, media, json) = post(&app, &key, ct, accept, body).await;
        assert_eq!(got, status, "{name}: {json:.300}");
        assert_eq!(
            json["errors"][0]["extensions"]["code"], code,
            "{name}: {json:.300}"
        );
        assert!(
            json.get("data").is_none(),
            "{name}: a request error has no data"
        );
        assert!(media.contains("json"), "{name}: {media}");
        still_up(&app).await;
    }
    // A GET runs queries, never mutations.
    let client = reqwest::Client::new();
    let get = client
        .get(format!(
            "{}?{}",
            app.url("/graphql"),
            serde_urlencoded::to_string([("query", mutation)]).unwrap()
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    let get = client
        .get(format!(
            "{}?{}",
            app.url("/graphql"),
            serde_urlencoded::to_string([
                (
                    "query",
                    "query($n: Int) { customers(first: $n) { edges { node { id } } } }",
                ),
                ("variables", r#"{"n": 1}"#),
            ])
            .unwrap()
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let body: Value = get.json().await.unwrap();
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(row_counts(&app).await, before, "nothing was written");
}

#[tokio::test]
async fn errors_never_echo_large_inputs() {
    let app = TestApp::spawn().await;
    let key = app.key(Role::Read).await;
    let long_name = "a".repeat(50_000);
    let huge_value = "x".repeat(900_000);
    for body in [
        query_body(&format!("{{ {long_name} }}")),
        json!({"query": "query($n: Int) { customers(first: $n) { edges { node { id } } } }", "variables": {"n": huge_value}}).to_string(),
        json!({"query": format!("{{ customers(search: {}) {{ edges {{ node {{ id }} }} }} }}", "1".repeat(50_000))}).to_string(),
    ] {
        let (_, _, json) = post(&app, &key, Some("application/json"), Some(GRJ), body).await;
        let text = json.to_string();
        assert!(text.len() < 2_000, "{:.400}", text);
        assert!(json["errors"][0]["extensions"]["code"].is_string(), "{text}");
    }
}

/// Three nested `first: 100` lists from a customer token: 10⁶ nodes.
const FAN_OUT: &str = r#"{ customer(externalId: "partner") { children(creditSystem: {key: "photos"}, first: 100) { nodes { customer { children(creditSystem: {key: "photos"}, first: 100) { nodes { customer { children(creditSystem: {key: "photos"}, first: 100) { nodes { used } } } } } } } } } }"#;

#[tokio::test]
async fn cost_counts_list_sizes_and_aliases() {
    let app = TestApp::spawn().await;
    let token = setup(&app).await;
    let (status, _, body) = post(
        &app,
        &token,
        Some("application/json"),
        Some(GRJ),
        query_body(FAN_OUT),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let ext = &body["errors"][0]["extensions"];
    assert_eq!(ext["code"], "QUERY_TOO_COMPLEX");
    assert_eq!(ext["limit"], 250_000);
    assert!(ext["cost"].as_u64().unwrap() > 1_000_000, "{body}");
    // Aliases count each time: one 200-customer list costs ~2,800, a
    // hundred aliases of it ~280,000.
    let list = "customers(first: 200) { edges { node { id wallets { id } } } }";
    let aliased: String = (0..100).map(|i| format!("a{i}: {list} ")).collect();
    let (status, _, body) = post(
        &app,
        &app.admin_key,
        Some("application/json"),
        Some(GRJ),
        query_body(&format!("{{ {aliased} }}")),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["measure"], "cost");
    assert!(body["errors"][0]["extensions"]["cost"].as_u64().unwrap() > 250_000);
    let (status, _, body) = post(
        &app,
        &app.admin_key,
        Some("application/json"),
        Some(GRJ),
        query_body(&format!("{{ {list} }}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // README step 5, the frontend's dashboard query, fits for a customer
    // token.
    let dashboard = r#"{
      customer(externalId: "partner") {
        name
        wallets {
          creditSystem { key name unitSingular unitPlural }
          balance { available pending total included purchased promotional expiringSoon(days: 30) }
          grants(first: 20, filter: {live: true}) { edges { node { id category amount remaining expiresAt priority reason } } }
          entries(first: 20, filter: {types: [GRANT, USAGE]}) {
            edges { node { id type amount balanceAfter createdAt feature eventRef userRef splits { grant { id } amount } } }
            pageInfo { hasNextPage endCursor }
          }
        }
      }
    }"#;
    let data = app.ok(&token, dashboard, json!({})).await;
    assert_eq!(
        data["customer"]["wallets"][0]["balance"]["available"],
        "100"
    );
}

#[tokio::test]
async fn the_standard_introspection_query_loads_the_schema() {
    let app = TestApp::spawn().await;
    let token = setup(&app).await;
    let query = include_str!("fixtures/introspection.graphql");
    for key in [&app.admin_key, &token] {
        let data = app.ok(key, query, json!({})).await;
        let types = data["__schema"]["types"].as_array().unwrap();
        assert!(types.iter().any(|t| t["name"] == "Credits"));
        assert_eq!(data["__schema"]["queryType"]["name"], "Query");
    }
    // Introspection deeper than its own bound is refused.
    let deep = format!(
        "{{ __schema {{ types {{ {} name {} }} }} }}",
        "ofType { ".repeat(16),
        "}".repeat(16)
    );
    let (_, _, body) = post(
        &app,
        &app.admin_key,
        Some("application/json"),
        Some(GRJ),
        query_body(&deep),
    )
    .await;
    assert_eq!(
        body["errors"][0]["extensions"]["measure"], "introspectionDepth",
        "{body}"
    );
}

#[tokio::test]
async fn responses_follow_the_spec_shape() {
    let app = TestApp::spawn().await;
    let token = setup(&app).await;
    // Keys in query order, whatever order resolvers finish in.
    let resp = reqwest::Client::new()
        .post(app.url("/graphql"))
        .bearer_auth(&app.admin_key)
        .json(&json!({"query": r#"{ zeta: viewer { role } customer(externalId: "partner") { name wallets { balance { available } } externalId } alpha: viewer { role } }"#}))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let order: Vec<usize> = [
        "\"zeta\"",
        "\"customer\"",
        "\"name\"",
        "\"wallets\"",
        "\"externalId\"",
        "\"alpha\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap_or_else(|| panic!("{k} in {text}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    // A nullable field's error nulls it; the rest stays.
    let data_and_errors = |q: &'static str, key: String| {
        let app = &app;
        async move { app.gql(Some(&key), q, json!({})).await.1 }
    };
    // (a token for the client alone may not read its parent).
    let client_token = app
        .ok(
            &app.admin_key,
            r#"mutation { createCustomerToken(customer: {externalId: "client"}, ttlSeconds: 600) { token } }"#,
            json!({}),
        )
        .await["createCustomerToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = data_and_errors(
        r#"{ customer(externalId: "client") { name parent { name } externalId } }"#,
        client_token,
    )
    .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["path"],
        json!(["customer", "parent"]),
        "{body}"
    );
    assert_eq!(
        serde_json::to_string(&body["data"]).unwrap(),
        r#"{"customer":{"externalId":"client","name":"Client","parent":null}}"#,
        "(serde_json sorts keys; the order is checked above)"
    );
    // A non-null field's error nulls its nearest nullable parent.
    let body = data_and_errors(
        r#"{ viewer { role } c: customer(externalId: "client") { name parent { name children(creditSystem: {key: "nope"}) { edges { node { used } } } } } }"#,
        app.admin_key.clone(),
    )
    .await;
    assert_eq!(
        body["errors"][0]["path"],
        json!(["c", "parent", "children"]),
        "{body}"
    );
    assert_eq!(body["data"]["viewer"]["role"], "ADMIN", "{body}");
    assert_eq!(body["data"]["c"]["name"], "Client", "{body}");
    assert!(
        body["data"]["c"]
            .as_object()
            .unwrap()
            .contains_key("parent"),
        "{body}"
    );
    assert!(body["data"]["c"]["parent"].is_null(), "{body}");
    // ... and up to `data` when every position above is non-null.
    let body = data_and_errors(
        r#"{ viewer { role } customer(externalId: "nope") { name } }"#,
        app.admin_key.clone(),
    )
    .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{body}"
    );
    assert!(
        body.as_object().unwrap().contains_key("data") && body["data"].is_null(),
        "{body}"
    );
    // A customer token's refusal has no made-up location.
    let body = data_and_errors("{ customers(first: 1) { edges { node { id } } } }", token).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
    assert!(body["errors"][0].get("locations").is_none(), "{body}");
}
