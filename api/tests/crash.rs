//! The API killed with SIGKILL in the middle of a write load, then
//! restarted on the same database (issue 14): every acknowledged write is
//! there, every retry returns its original reply, every write whose reply
//! was lost applies exactly once when retried, and the ledger audits
//! clean. Runs the real binary, on SQLite and (with `TEST_DATABASE_URL`)
//! PostgreSQL.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use service::testing::TestDb;

const CONSUME: &str = r#"mutation($key: String!) { consumeCredits(input: {customer: {externalId: "c"}, creditSystem: {key: "t"}, amount: "1", feature: "f", idempotencyKey: $key}) { entry { id balanceAfter } } }"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `api serve`; on an empty database returns the printed key.
fn start(t: &TestDb, port: u16, workdir: &std::path::Path, fresh: bool) -> (Child, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_api"))
        .current_dir(workdir)
        .env("DATABASE_URL", &t.url)
        .env("SECRETS_KEY", t.secrets_key().to_base64())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("WORKER", "off")
        // 8 writers as fast as the server goes: past any per-key rate limit.
        .env("RATE_LIMIT_API_KEY", "off")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the api binary");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && line.trim().starts_with("ck_live_") {
                sent = tx.send(line.trim().to_owned()).is_ok();
            }
        }
    });
    let key = fresh
        .then(|| rx.recv_timeout(Duration::from_secs(20)).ok())
        .flatten();
    (child, key)
}

async fn wait_ready(client: &reqwest::Client, port: u16) {
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

async fn gql(
    client: &reqwest::Client,
    port: u16,
    key: &str,
    query: &str,
    vars: Value,
) -> Result<Value, String> {
    let resp = client
        .post(format!("http://127.0.0.1:{port}/graphql"))
        .bearer_auth(key)
        .json(&json!({"query": query, "variables": vars}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body: Value = resp.json().await.map_err(|e| e.to_string())?;
    if body.get("errors").is_some() {
        return Err(body.to_string());
    }
    Ok(body["data"].clone())
}

#[tokio::test]
async fn a_killed_server_loses_no_acknowledged_write() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let t = TestDb::unmigrated().await;
    let workdir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (child, key) = start(&t, port, workdir.path(), true);
    let key = key.expect("a key on stdout");
    let client = reqwest::Client::new();
    wait_ready(&client, port).await;
    gql(
        &client,
        port,
        &key,
        r#"mutation {
          createCreditSystem(input: {key: "t", name: "T", unitSingular: "t", unitPlural: "ts", precision: 0}) { creditSystem { id } }
          createCustomer(input: {externalId: "c", name: "C"}) { customer { id } }
          grantCredits(input: {customer: {externalId: "c"}, creditSystem: {key: "t"}, amount: "1000000", category: PURCHASED, reason: "r", idempotencyKey: "g"}) { grant { id } }
        }"#,
        json!({}),
    )
    .await
    .unwrap();

    // 8 writers until the kill; every reply (or its loss) is recorded.
    let replies: Arc<Mutex<HashMap<String, Result<Value, String>>>> = Default::default();
    let child = Arc::new(Mutex::new(child));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, key, replies) = (client.clone(), key.clone(), replies.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..10_000 {
                let k = format!("k-{w}-{i}");
                let reply = gql(&client, port, &key, CONSUME, json!({"key": k})).await;
                let failed = reply.is_err();
                replies
                    .lock()
                    .unwrap()
                    .insert(k, reply.map(|d| d["consumeCredits"]["entry"].clone()));
                if failed {
                    return;
                }
            }
        }));
    }
    // Kill once a good number of writes were acknowledged.
    for _ in 0..400 {
        if replies.lock().unwrap().len() >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child.lock().unwrap().kill().unwrap();
    child.lock().unwrap().wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let replies = std::mem::take(&mut *replies.lock().unwrap());
    let acknowledged = replies.values().filter(|r| r.is_ok()).count();
    let lost = replies.len() - acknowledged;
    assert!(
        acknowledged >= 100,
        "the kill came mid-load: {acknowledged} acknowledged"
    );
    assert!(lost >= 1, "the kill cut some requests off");

    // Restart on the same database.
    let (mut child, _) = start(&t, port, workdir.path(), false);
    wait_ready(&client, port).await;
    // Retries, 8 at a time: the original reply for every acknowledged
    // write; for a lost one, whatever the first retry answers, again.
    use futures_util::StreamExt as _;
    let retries = futures_util::stream::iter(replies.iter().map(|(k, reply)| {
        let (client, key) = (client.clone(), key.clone());
        async move {
            let again = gql(&client, port, &key, CONSUME, json!({"key": k}))
                .await
                .unwrap_or_else(|e| panic!("retry of {k}: {e}"));
            let entry = again["consumeCredits"]["entry"].clone();
            match reply {
                Ok(original) => {
                    assert_eq!(
                        &entry, original,
                        "the retry of {k} returns the original reply"
                    )
                }
                Err(_) => {
                    let third = gql(&client, port, &key, CONSUME, json!({"key": k}))
                        .await
                        .unwrap();
                    assert_eq!(third["consumeCredits"]["entry"], entry, "{k}");
                }
            }
        }
    }))
    .buffer_unordered(8)
    .collect::<Vec<()>>()
    .await;
    let applied = retries.len() as u64;
    // Each key applied exactly once: the balance says so.
    let data = gql(
        &client,
        port,
        &key,
        r#"{ customer(externalId: "c") { wallet(creditSystem: {key: "t"}) { balance { available } entries(first: 1) { nodes { type } } } } }"#,
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(
        data["customer"]["wallet"]["balance"]["available"],
        (1_000_000 - applied).to_string(),
        "{acknowledged} acknowledged, {lost} lost"
    );
    let audit = gql(
        &client,
        port,
        &key,
        "{ ledgerAudit(first: 500) { walletsChecked problems { problems } } }",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(audit["ledgerAudit"]["problems"], json!([]), "{audit}");
    child.kill().unwrap();
    child.wait().unwrap();
}
