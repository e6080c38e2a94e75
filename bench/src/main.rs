//! `cargo run --release -p bench -- [--quick] [--scale F] …` (or `just bench`):
//! prints the ratio table and writes `bench/results/<date>.md`.

#![allow(clippy::float_arithmetic)] // timings and ratios only, no money

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use bench::{Options, Sections, scratch::Backend};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Benchmarks the credits engine against baselines measured in the same run")]
struct Args {
    /// Small scales and 2 s runs: a minute or two.
    #[arg(long)]
    quick: bool,
    /// Multiplies the job and report scales (reset, sweep, usage entries).
    #[arg(long)]
    scale: Option<f64>,
    /// Seconds per load run.
    #[arg(long)]
    secs: Option<f64>,
    /// Databases: sqlite, postgres (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    backends: Vec<String>,
    /// Databases the job and usage sections run on.
    #[arg(long, value_delimiter = ',')]
    jobs_on: Vec<String>,
    /// Sections: consume, nested, jobs, usage, notifications
    /// (comma-separated; notifications needs consume).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "consume,nested,jobs,usage,notifications"
    )]
    sections: Vec<String>,
    /// Wallets the spread consume runs go over.
    #[arg(long)]
    wallets: Option<usize>,
    /// Concurrent clients of the consume runs.
    #[arg(long, value_delimiter = ',')]
    clients: Vec<usize>,
    /// Allowance reset scales (subscriptions), e.g. 10000,100000.
    #[arg(long, value_delimiter = ',')]
    reset: Vec<usize>,
    /// Expiry sweep scales (expired grants), e.g. 100000,1000000.
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<usize>,
    /// USAGE entries for the report section.
    #[arg(long)]
    usage: Option<usize>,
    /// Admin URL of the local PostgreSQL; scratch databases are created there.
    #[arg(
        long,
        env = "BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg_url: String,
    /// The `api` binary to measure (default: `api` next to this binary,
    /// built first with `cargo build --release -p api -p bench` when run by cargo).
    #[arg(long)]
    api_bin: Option<PathBuf>,
    /// Serve the API inside this process instead of the release binary.
    #[arg(long)]
    in_process: bool,
    #[arg(long, default_value = "pgbench")]
    pgbench: PathBuf,
    /// Where to write the results (default: bench/results/<date>.md).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn backends(names: &[String]) -> anyhow::Result<Vec<Backend>> {
    names
        .iter()
        .map(|n| match n.trim().to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "pg" | "postgresql" => Ok(Backend::Postgres),
            other => bail!("unknown backend {other:?} (sqlite, postgres)"),
        })
        .collect()
}

/// The release `api` next to this binary, rebuilt first when cargo runs us.
fn api_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("binary folder")?;
    let api = dir.join(format!("api{}", std::env::consts::EXE_SUFFIX));
    if let Ok(cargo) = std::env::var("CARGO") {
        let release = dir.file_name().is_some_and(|n| n == "release");
        eprintln!(
            "bench: building the api binary ({})",
            if release { "release" } else { "debug" }
        );
        // With `-p bench` the features unify as in the outer `cargo run -p
        // bench` (service's `testing`, which only adds code nothing calls):
        // the libraries are shared and only the api binary is linked.
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "-q", "-p", "api", "-p", "bench"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().context("cargo build -p api")?;
        if !status.success() {
            bail!("cargo build -p api failed");
        }
        if !release {
            eprintln!(
                "bench: WARNING: not a release build; run with `cargo run --release -p bench`"
            );
        }
    }
    if !api.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p api`, or pass --api-bin",
            api.display()
        );
    }
    Ok(api)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut options = if args.quick {
        Options::quick()
    } else {
        Options::full()
    };
    if let Some(f) = args.scale {
        options = options.scaled(f);
    }
    options.backends = backends(&args.backends)?;
    if !args.jobs_on.is_empty() {
        options.jobs_backends = backends(&args.jobs_on)?;
    }
    let has = |s: &str| args.sections.iter().any(|x| x == s);
    options.sections = Sections {
        consume: has("consume"),
        nested: has("nested"),
        jobs: has("jobs"),
        usage: has("usage"),
        notifications: has("notifications"),
    };
    if let Some(s) = args.secs {
        options.run_secs = s;
    }
    if let Some(w) = args.wallets {
        options.wallets = w;
    }
    if !args.clients.is_empty() {
        options.clients = args.clients.clone();
    }
    if !args.reset.is_empty() {
        options.reset = args.reset.clone();
    }
    if !args.sweep.is_empty() {
        options.sweep = args.sweep.clone();
    }
    if let Some(u) = args.usage {
        options.usage_entries = u;
    }
    options.pg_url = args.pg_url.clone();
    options.pgbench = args.pgbench.clone();
    options.api_bin = if args.in_process {
        None
    } else {
        Some(match &args.api_bin {
            Some(p) => p.clone(),
            None => api_binary()?,
        })
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    options.command = format!("cargo run --release -p bench -- {}", argv.join(" "))
        .trim_end()
        .to_owned();

    let report = bench::run(&options).await?;
    let table = report.table();
    println!("\n{table}");

    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("results")
            .join(format!(
                "{}.md",
                report
                    .started
                    .unwrap_or_else(chrono::Utc::now)
                    .format("%Y-%m-%d")
            ))
    });
    let previous = std::fs::read_to_string(&out).ok();
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &out,
        bench::results_markdown(&options, &report, previous.as_deref()),
    )
    .with_context(|| format!("write {}", out.display()))?;
    eprintln!("bench: wrote {} ({:.0} s)", out.display(), report.secs);
    Ok(())
}
