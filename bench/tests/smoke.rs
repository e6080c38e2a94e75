//! A tiny run of the harness on SQLite with the router served in-process:
//! it must produce the ratio table's rows. Nothing about timings is asserted.

use bench::{Options, scratch::Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_run_produces_every_row() {
    let mut options = Options::quick();
    options.backends = vec![Backend::Sqlite];
    options.jobs_backends = vec![Backend::Sqlite];
    options.api_bin = None;
    options.run_secs = 0.2;
    options.wallets = 20;
    options.clients = vec![2];
    options.read_clients = 2;
    options.reset = vec![5, 10];
    options.sweep = vec![20, 40];
    options.usage_entries = 2_000;
    let report = bench::run(&options).await.expect("the harness runs");
    let table = report.table();
    for measure in [
        "consume, spread, 2 clients",
        "consume, hot, 2 clients",
        "nested read 3×20×20",
        "SQL statements per nested request",
        "allowance reset, 10 due subscriptions",
        "expiry sweep, 40 expired grants",
        "consume p99 during the allowance reset ÷ without it, 2 clients",
        "consume p99 during the expiry sweep ÷ without it, 2 clients",
        "usageBreakdown, 2000 entries",
    ] {
        assert!(table.contains(measure), "no row {measure:?} in\n{table}");
    }
    assert!(
        !table.contains("(pending)"),
        "a consume row lacks its baseline:\n{table}"
    );
    let md = bench::results_markdown(&options, &report, Some("old\n## Findings\n\nkept\n"));
    assert!(md.contains("## Ratio table") && md.ends_with("kept\n"));
}
