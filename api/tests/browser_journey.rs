//! A new user's journey through the console (issue 17's "Done when"), in
//! headless Chromium against a fresh server: nothing in the database but
//! what `cargo run -p api` makes itself (the tenant and its admin key).
//! `tests/browser/journey.mjs` signs in with the key, creates a credit
//! system, a plan with graduated tiers (preview shown), publishes it,
//! creates and edits a customer, subscribes it and sees the allowance as
//! its balance; this test then consumes credits through the API, as a
//! backend would, and the balance shown moves live; a customer token made
//! in the console opens the widgets demo page, which shows the balance;
//! a READ key made on the API keys page sees no write control.
//! No GraphQL typed by hand, no request outside the server's origin,
//! axe-core clean on every page state.
//!
//! `SCREENSHOTS_FOR_README=1` also copies the README's screenshots into
//! `docs/screenshots/` (1200×900 views, not full pages).
//!
//! Without `/usr/bin/chromium` or `node` the test says it skipped and
//! passes — except under CI (`CI=true`), where it fails.

mod common;

use std::time::{Duration, Instant};

use common::{
    TestApp,
    browser::{install_harness, run_script, screenshot_path, skip_browser_test},
};
use serde_json::{Value, json};

#[tokio::test]
async fn a_new_user_configures_a_plan_subscribes_a_customer_and_watches_its_balance() {
    if skip_browser_test() {
        return;
    }
    install_harness();
    let app = TestApp::spawn().await;
    let shots = screenshot_path("journey-customer.png")
        .parent()
        .unwrap()
        .to_owned();
    let ready = shots.join("journey-ready");
    let _ = std::fs::remove_file(&ready);
    let base = app.url("");

    // The backend: once the page shows the allowance, it spends 250.
    let backend = async {
        let start = Instant::now();
        while !ready.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "the browser never got to the balance"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        app.ok(
            &app.admin_key,
            r#"mutation { consumeCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "tokens"},
              amount: "250", idempotencyKey: "journey-1", feature: "chat", description: "A chat"}) { entry { balanceAfter } } }"#,
            json!({}),
        )
        .await
    };
    let args = [
        base.as_str(),
        app.admin_key.as_str(),
        shots.to_str().unwrap(),
    ];
    let (out, consumed) = tokio::join!(run_script("journey.mjs", &args), backend);
    let _ = std::fs::remove_file(&ready);
    std::fs::write(shots.join("journey-result.json"), out.to_string()).unwrap();
    assert_eq!(
        consumed["consumeCredits"]["entry"]["balanceAfter"], "750",
        "{consumed}"
    );

    // Only the server's origin, no script error.
    assert_eq!(out["external"], json!([]), "{out}");
    assert_eq!(out["pageErrors"], json!([]), "{out}");
    assert_eq!(out["csp"], json!([]), "{out}");
    assert_eq!(out["emptyCustomers"], true, "{out}");

    // The plan: the preview priced 2500 on the graduated tiers
    // (1000 × 0.05 + 1500 × 0.03 = 95, 20 % tax), and it was published.
    assert_eq!(out["preview"]["total"], "114.00", "{out}");
    assert!(
        out["published"].as_str().unwrap().contains("PUBLISHED"),
        "{out}"
    );

    // The customer, created and edited in the console.
    let facts = out["customerFacts"].as_str().unwrap();
    assert!(
        facts.contains("acme") && facts.contains("billing@acme.test"),
        "{facts}"
    );
    assert_eq!(out["noWallets"], true, "{out}");
    assert!(
        out["edited"]["facts"]
            .as_str()
            .unwrap()
            .contains("finance@acme.test"),
        "{out}"
    );
    assert_eq!(out["edited"]["name"], "Acme Corp", "{out}");
    let customer = app
        .ok(
            &app.admin_key,
            r#"{ customer(externalId: "acme") { name email subscriptions { status plan { key } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        customer["customer"],
        json!({"name": "Acme Corp", "email": "finance@acme.test",
            "subscriptions": [{"status": "ACTIVE", "plan": {"key": "starter"}}]}),
        "{customer}"
    );

    // Subscribed: the allowance is the balance; the backend's spend moved
    // it on the page without a reload.
    assert!(
        out["subscribed"].as_str().unwrap().contains("granted 1000"),
        "{out}"
    );
    let digits = |v: &Value| -> String {
        v.as_str()
            .unwrap()
            .chars()
            .filter(char::is_ascii_digit)
            .collect()
    };
    assert_eq!(digits(&out["balanceAfterSubscribe"]), "1000", "{out}");
    assert_eq!(digits(&out["balanceAfterConsume"]), "750", "{out}");
    assert!(
        out["grants"][0].as_str().unwrap().contains("INCLUDED"),
        "{out}"
    );

    // The widgets demo page with the token made in the console.
    assert_eq!(out["tokenShown"], true, "{out}");
    assert_eq!(digits(&out["widgetsBalance"]), "750", "{out}");
    let history = out["widgetsHistory"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|r| r.as_str().unwrap().contains("A chat")),
        "{out}"
    );
    let customers = out["customers"].as_array().unwrap();
    assert_eq!(customers.len(), 1, "{out}");

    // A READ key (made in the console): on the customers list only the
    // search form; on the customer page no form and no button of ours
    // (the widgets' controls live in their shadow roots).
    assert_eq!(
        out["read"]["customers"],
        json!(["form:search", "input:customer-search", "button:Search"]),
        "{out}"
    );
    assert_eq!(out["read"]["customer"], json!([]), "{out}");

    // axe-core on every page state: nothing serious or critical.
    let axe = out["axe"].as_object().unwrap();
    assert!(axe.len() >= 12, "{axe:?}");
    for (page, result) in axe {
        assert!(result["rules"].as_u64().unwrap() > 10, "{page}: {result}");
        let serious: Vec<&Value> = result["violations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["impact"] == "serious" || v["impact"] == "critical")
            .collect();
        assert!(serious.is_empty(), "{page}: {serious:#?}");
    }

    // Screenshots for a person to look at; with SCREENSHOTS_FOR_README=1
    // the README's four, 1200×900 views, copied into docs/screenshots/.
    let readme = [
        ("journey-customer-view.png", "console-customer.png"),
        ("journey-plan-editor-view.png", "console-plan-editor.png"),
        ("journey-customers-view.png", "console-customers.png"),
        ("journey-widgets-view.png", "widgets.png"),
    ];
    for (shot, _) in readme {
        let path = shots.join(shot);
        assert!(
            std::fs::metadata(&path).is_ok_and(|m| m.len() > 10_000),
            "{}",
            path.display()
        );
    }
    if std::env::var("SCREENSHOTS_FOR_README").is_ok_and(|v| v == "1") {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        for (shot, name) in readme {
            std::fs::copy(shots.join(shot), docs.join(name)).unwrap();
        }
    }
}
