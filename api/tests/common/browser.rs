//! Headless Chromium for the browser tests: Debian's system browser
//! driven by Playwright scripts in `api/tests/browser/*.mjs` (npm
//! `playwright-core` and `axe-core`, lockfile committed, no browser
//! download). A test calls [`skip_browser_test`] first (it says why it
//! skipped, and fails under `CI=true`), then [`install_harness`], then
//! [`run_script`].

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

/// Debian's Chromium; `CHROMIUM` names another.
pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

pub fn harness_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Says so on the terminal (past the test harness' capture) and returns
/// `true` when the browser test can't run here; under CI that is a failure.
pub fn skip_browser_test() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let chromium = chromium();
    let missing: Vec<String> = [
        (!chromium.exists()).then(|| chromium.display().to_string()),
        (!node).then(|| "node".to_owned()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return false;
    }
    let message = format!(
        "browser tests SKIPPED: {} not found (apt-get install -y chromium nodejs; .ci/run does)",
        missing.join(" and ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{message}; CI=true, so this is a failure");
    }
    // Straight to stderr: `eprintln!` would be captured and never shown
    // for a test that passes.
    let _ = writeln!(std::io::stderr().lock(), "\n{message}");
    true
}

/// `npm ci` once per test process, unless CI (or an earlier run) did.
pub fn install_harness() {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed {
        return;
    }
    let dir = harness_dir();
    let installed_here = ["playwright-core/package.json", "axe-core/axe.min.js"]
        .iter()
        .all(|f| dir.join("node_modules").join(f).exists());
    if !installed_here {
        let status = Command::new("npm")
            .args(["ci", "--silent", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (node 20) installs the browser tests' Playwright");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    *installed = true;
}

/// `target/screenshots/NAME` in the workspace (ignored by git, whatever
/// `CARGO_TARGET_DIR` says), created if need be.
pub fn screenshot_path(name: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = workspace.join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs `node SCRIPT ARGS…` in the harness directory and parses the one
/// JSON object it prints; panics with its output when it fails.
pub async fn run_script(script: &str, args: &[&str]) -> serde_json::Value {
    let output = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(harness_dir())
        .env("CHROMIUM", chromium())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs the browser test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed:\n{stderr}\n{stdout}"
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{stdout}"))
}
