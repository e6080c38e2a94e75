//! The console's catalog editor in headless Chromium (issue 17):
//! `tests/browser/catalog.mjs` creates a credit system and a plan with
//! graduated tiers from the UI, reads the live quote preview, publishes,
//! duplicates and archives; a READ key sees the same pages without a
//! write control. The preview's total must be, as a string, what
//! `quoteTopUp` answers for a customer subscribed to the published plan.
//!
//! Without `/usr/bin/chromium` or `node` the test says it skipped and
//! passes — except under CI (`CI=true`), where it fails.

mod common;

use common::{
    TestApp,
    browser::{install_harness, run_script, screenshot_path, skip_browser_test},
};
use serde_json::{Value, json};

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_admin_builds_a_plan_with_tiers_and_its_preview_is_the_quote() {
    if skip_browser_test() {
        return;
    }
    install_harness();
    let app = TestApp::spawn().await;
    let read = app.key(service::api_keys::Role::Read).await;
    // A draft for the READ key to look at.
    app.ok(
        &app.admin_key,
        r#"mutation {
          createProduct(input: {key: "basic", name: "Basic"}) { product { id } }
          createPlan(input: {product: {key: "basic"}, key: "draft", name: "Draft", billingInterval: MONTHLY}) { plan { id } }
        }"#,
        json!({}),
    )
    .await;
    // 50 more credit systems: the list pages.
    let systems: String = (0..50)
        .map(|i| format!(r#"s{i}: createCreditSystem(input: {{key: "cs-{i:02}", name: "System {i}", unitSingular: "unit", unitPlural: "units", precision: 0}}) {{ creditSystem {{ id }} }} "#))
        .collect();
    app.ok(
        &app.admin_key,
        &format!("mutation {{ {systems} }}"),
        json!({}),
    )
    .await;
    let names = [
        "credit-systems",
        "credit-system",
        "plans",
        "plan-editor",
        "plan-published",
        "plan-duplicate",
        "plan-read",
    ];
    let shots = screenshot_path("catalog-plan-editor.png")
        .parent()
        .unwrap()
        .to_owned();
    for name in names {
        let _ = std::fs::remove_file(shots.join(format!("catalog-{name}.png")));
    }
    let base = app.url("");
    let out = run_script(
        "catalog.mjs",
        &[&base, &app.admin_key, &read, shots.to_str().unwrap()],
    )
    .await;
    // What the browser saw, for a person to read.
    std::fs::write(shots.join("catalog-result.json"), out.to_string()).unwrap();

    // Only the server, no script error.
    assert_eq!(out["external"], json!([]), "{out}");
    assert_eq!(out["pageErrors"], json!([]), "{out}");
    assert_eq!(out["csp"], json!([]), "{out}");

    // The credit system, created then relabelled; a refused one says why.
    assert_eq!(out["currencyShownForUnits"], false);
    let cs = out["creditSystem"].as_str().unwrap();
    assert!(cs.contains("tokens") && cs.contains("50"), "{cs}");
    let refused = out["refusedSystem"].as_str().unwrap();
    // The API's message names the field; the console doesn't repeat it.
    assert!(
        refused.starts_with("Not saved: currency:") && !refused.contains("(currency)"),
        "{refused}"
    );
    let data = app
        .ok(
            &read,
            r#"{ creditSystem(key: "tokens") { name unitPlural lowBalanceThreshold } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        data["creditSystem"],
        json!({"name": "AI tokens", "unitPlural": "tokens", "lowBalanceThreshold": "50"})
    );

    // The tier editor: the second row starts where the first ends; the
    // preview priced 2500 (1000 × 0.05 + 1500 × 0.03, 20 % tax), asked
    // once after the typing stopped, and followed the tiers.
    assert_eq!(out["secondTierStarts"], "1000");
    let preview = &out["preview"];
    assert_eq!(preview["subtotal"], "95.00", "{preview}");
    assert_eq!(preview["tax"], "19.00", "{preview}");
    assert_eq!(preview["total"], "114.00", "{preview}");
    assert!(
        preview["summary"]
            .as_str()
            .unwrap()
            .contains("2500 would cost 114.00 EUR"),
        "{preview}"
    );
    assert_eq!(strings(&preview["lines"]).len(), 2, "{preview}");
    let asked = strings(&preview["asked"]);
    assert_eq!(asked.last().map(String::as_str), Some("2500"), "{preview}");
    assert!(asked.len() <= 2, "debounced: {asked:?}");
    assert_eq!(out["previewAt004"], "132.00"); // (50 + 60) × 1.2
    let refused = out["previewRefused"].as_str().unwrap();
    assert!(refused.contains("pricing.topUpPrice.tiers[1]"), "{refused}");

    // The saved plan credit opened in the editor with its terms, and
    // was changed there.
    assert_eq!(
        out["editorPrefilled"],
        json!(["1000", "1000", "0.03", "EUR"]),
        "{out}"
    );
    assert!(
        out["edited"].as_str().unwrap().contains("1200 tokens"),
        "{out}"
    );

    // What the plan saved.
    let plan = app
        .ok(
            &read,
            r#"{ plan(key: "pro") { status product { key } credits { included { amount resetInterval }
              pricing { topUpPrice { pricingType model currency taxRate tiers { firstUnit lastUnit amount } } } }
              entitlements { feature { key } creditCost } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        plan["plan"],
        json!({"status": "PUBLISHED", "product": {"key": "api"},
            "credits": [{"included": {"amount": "1200", "resetInterval": "MONTHLY"},
                "pricing": {"topUpPrice": {"pricingType": "GRADUATED", "model": "PER_UNIT", "currency": "EUR", "taxRate": "0.2",
                    "tiers": [{"firstUnit": "0", "lastUnit": "1000", "amount": "0.05"},
                              {"firstUnit": "1000", "lastUnit": null, "amount": "0.03"}]}}}],
            "entitlements": [{"feature": {"key": "image.generate"}, "creditCost": "5"}]}),
        "{plan}"
    );
    let costs = strings(&out["costs"]);
    assert!(
        costs.len() == 1 && costs[0].contains("image.generate"),
        "{costs:?}"
    );

    // The preview's total is the customer's quote, to the character.
    app.ok(
        &app.admin_key,
        r#"mutation {
          createCustomer(input: {externalId: "buyer", name: "Buyer"}) { customer { id } }
          subscribe(input: {customer: {externalId: "buyer"}, plan: {key: "pro"}, idempotencyKey: "s-buyer"}) { subscription { id } }
        }"#,
        json!({}),
    )
    .await;
    let quote = app
        .ok(
            &read,
            r#"{ quoteTopUp(customer: {externalId: "buyer"}, creditSystem: {key: "tokens"}, quantity: "2500") { subtotal tax total } }"#,
            json!({}),
        )
        .await;
    assert_eq!(quote["quoteTopUp"]["total"], preview["total"]);
    assert_eq!(quote["quoteTopUp"]["subtotal"], preview["subtotal"]);
    assert_eq!(quote["quoteTopUp"]["tax"], preview["tax"]);

    // Published: PUBLISHED shown, the terms' edit controls gone (the name
    // and description stay editable, as the API allows; archive and
    // duplicate are there).
    let published = out["published"].as_str().unwrap();
    assert!(published.contains("PUBLISHED"), "{published}");
    // Focus moved to what happened.
    assert_eq!(
        out["focusAfterPublish"],
        "Plan published: its terms are frozen."
    );
    let controls = strings(&out["publishedControls"]).join(" | ");
    for gone in [
        "Publish plan",
        "Attach credit system",
        "Edit AI tokens",
        "Detach AI tokens",
        "Set credit cost",
        "Add top-up price tier",
        "Remove image.generate",
    ] {
        assert!(!controls.contains(gone), "{gone} still shown: {controls}");
    }
    for kept in [
        "Archive plan",
        "Duplicate plan",
        "Save name and description",
    ] {
        assert!(controls.contains(kept), "{kept} missing: {controls}");
    }

    // Duplicate: a new DRAFT with the credits, editable; then published
    // and archived.
    let duplicate = out["duplicate"].as_str().unwrap();
    assert!(
        duplicate.contains("DRAFT") && duplicate.contains("Pro"),
        "{duplicate}"
    );
    assert_eq!(out["duplicateEditable"], true);
    assert!(out["archived"].as_str().unwrap().contains("ARCHIVED"));
    let copy = app
        .ok(
            &read,
            r#"{ plan(key: "pro-2027") { status copiedFrom { key } credits { id } entitlements { creditCost } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(copy["plan"]["status"], "ARCHIVED");
    assert_eq!(copy["plan"]["copiedFrom"]["key"], "pro");
    assert_eq!(copy["plan"]["credits"].as_array().unwrap().len(), 1);

    // READ: no write control on any catalog page.
    let read_pages = out["read"].as_object().unwrap();
    assert_eq!(read_pages.len(), 5);
    for (path, controls) in read_pages {
        assert_eq!(controls, &json!([]), "{path}");
    }

    // Paging: 50, then the 51st (50 made here, "tokens" in the UI).
    let paging = &out["paging"];
    let (first, second) = (
        strings(&paging["firstPage"]),
        strings(&paging["secondPage"]),
    );
    assert_eq!(first.len(), 50, "{paging}");
    assert_eq!(second.len(), 1, "{paging}");
    assert!(!first.contains(&second[0]), "{paging}");
    assert_eq!(paging["nextOnSecond"], 0, "{paging}");
    assert_eq!(
        paging["firstPageLink"], "/console/credit-systems",
        "{paging}"
    );

    // axe-core ran on every page and found nothing serious or critical.
    let axe = out["axe"].as_object().unwrap();
    assert!(axe.len() >= 11, "{axe:?}");
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
    for name in names {
        let path = shots.join(format!("catalog-{name}.png"));
        assert!(
            std::fs::metadata(&path).is_ok_and(|m| m.len() > 10_000),
            "{}",
            path.display()
        );
    }
}
