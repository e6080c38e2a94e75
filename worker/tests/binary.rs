//! The `worker` binary as an operator runs it: on a migrated database it
//! starts, logs "worker started", runs a cron tick through its queue, and
//! stops cleanly on SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use sea_orm::{ConnectionTrait, Statement};
use service::testing::TestDb;

#[tokio::test]
async fn starts_on_a_migrated_database_and_stops_on_sigterm() {
    // A migrated database of the kind under test (what the API's first
    // start, or `migration up`, leaves behind).
    let t = TestDb::new().await;
    let workdir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_worker"))
        .current_dir(workdir.path())
        .env("DATABASE_URL", &t.url)
        .env("SECRETS_KEY", t.secrets_key().to_base64())
        .env("MAIL_DIR", workdir.path().join("mail"))
        .env_remove("SMTP_URL")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the worker binary");

    // The log goes to stderr: read until the start line, then keep draining
    // it on this thread so the worker never writes into a full or closed
    // pipe.
    let stderr = child.stderr.take().unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if line.contains("worker started") {
                    sent = started_tx.send(Ok(())).is_ok();
                } else {
                    seen.push(line);
                }
            }
        }
        if !sent {
            let _ = started_tx.send(Err(seen.join("\n")));
        }
    });
    let started = tokio::task::spawn_blocking(move || {
        started_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| Err(format!("no start line: {e}")))
    })
    .await
    .unwrap();
    if let Err(log) = started {
        child.kill().ok();
        panic!("the worker did not start:\n{log}");
    }
    // A notifications tick (every 5 s) goes through the queue and is done.
    let db = t.db.reader();
    let sql = if t.is_postgres() {
        "SELECT COUNT(*) AS n FROM apalis.jobs WHERE job_type = 'credits.notifications' AND status = 'Done'"
    } else {
        "SELECT COUNT(*) AS n FROM Jobs WHERE job_type = 'credits.notifications' AND status = 'Done'"
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // The tables exist once the worker has prepared them.
        let done = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .ok()
            .flatten()
            .map(|row| row.try_get::<i64>("", "n").unwrap());
        if done.is_some_and(|n| n > 0) {
            break;
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            panic!("no notifications tick done by the worker binary");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "it keeps running");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_with_timeout(&mut child, Duration::from_secs(40));
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
