//! The `api` binary as a newcomer runs it: migrates, prints a key and the
//! GraphiQL URL, answers with that key, and stops cleanly on SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use service::testing::TestDb;

#[tokio::test]
async fn serve_prints_a_working_key_and_stops_on_sigterm() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // An empty (unmigrated) database of the kind under test.
    let t = TestDb::unmigrated().await;
    // Its working folder (where `./mail/` would go) is thrown away after.
    let workdir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_api"))
        .current_dir(workdir.path())
        .env("DATABASE_URL", &t.url)
        .env("SECRETS_KEY", t.secrets_key().to_base64())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("WORKER", "embedded")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the api binary");

    let stdout = child.stdout.take().unwrap();
    // Read until the key and URL are known, then keep draining stdout on a
    // thread so the server never writes into a closed pipe.
    let (found_tx, found_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut key, mut url) = (None, None);
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            if key.is_none() && line.starts_with("ck_live_") {
                key = Some(line.to_owned());
            }
            if let Some(u) = line.strip_prefix("GraphiQL: ") {
                url = Some(u.to_owned());
            }
            if !sent && key.is_some() && url.is_some() {
                sent = found_tx.send((key.clone(), url.clone())).is_ok();
            }
        }
        if !sent {
            let _ = found_tx.send((key, url));
        }
    });
    let (key, url) = tokio::task::spawn_blocking(move || found_rx.recv().unwrap())
        .await
        .unwrap();
    let (key, url) = (
        key.expect("a key on stdout"),
        url.expect("the URL on stdout"),
    );

    let body: Value = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&key)
        .json(&json!({ "query": "{ viewer { tenant { name } role } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({ "data": { "viewer": { "tenant": { "name": "default" }, "role": "ADMIN" } } })
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_with_timeout(&mut child, Duration::from_secs(30));
    assert_eq!(exit.map(|s| s.success()), Some(true), "graceful exit 0");
}

fn wait_with_timeout(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    None
}
