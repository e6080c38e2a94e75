//! `api`: serve GraphQL (default), print the schema, or manage tenants,
//! keys and the secrets key from a shell.

use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use service::{
    Db, SystemClock,
    api_keys::Role,
    secrets::{self, KeyOrigin, SecretsKey},
    tenants,
};

use api::config::{DatabaseArgs, SecretsArgs, ServeArgs};

#[derive(Debug, Parser)]
#[command(name = "api", about = "The credits engine's GraphQL API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Migrate the database and serve GraphQL (the default).
    Serve(Box<ServeArgs>),
    /// Print the GraphQL schema (SDL); `schema.graphql` is exactly this.
    PrintSchema,
    /// Manage tenants.
    Tenants {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Check every wallet of every tenant against the ledger's invariants;
    /// prints each problem and exits 1 if there is any.
    Audit {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Write a consistent copy of an SQLite database to FILE while the
    /// engine runs (PostgreSQL: use pg_dump).
    Backup {
        file: std::path::PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// The key webhook and customer-token secrets are sealed with.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Re-seal every secret under a new key (the current one from
    /// SECRETS_KEY or the key file). Stop the API and workers first, start
    /// them with the new key after. Running it again with the same two
    /// keys finishes an interrupted rotation and changes nothing after a
    /// finished one.
    Rotate {
        /// The new key: base64 of 32 random bytes (`openssl rand -base64
        /// 32`). Optional with the key file (SQLite without SECRETS_KEY):
        /// then a new key is made, kept in `<key file>.new` until the
        /// rotation is done, and the key file replaced.
        #[arg(long, env = "SECRETS_KEY_NEW", hide_env_values = true)]
        new_key: Option<String>,
        #[command(flatten)]
        secrets: SecretsArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant (prints its id).
    Create {
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create an API key and print it (shown once).
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(&s.to_ascii_uppercase()).ok_or_else(|| "expected ADMIN, WRITE or READ".into())
}

/// mimalloc instead of glibc's malloc: under load the nested read spent
/// ~19 % of its CPU in malloc/free, partly waiting on glibc's arena locks
/// (see README "Performance").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(*args).await,
        Some(Command::PrintSchema) => {
            print!("{}", api::graphql::sdl());
            Ok(())
        }
        Some(Command::Tenants {
            command: TenantCommand::Create { name, database },
        }) => {
            let db = Db::connect_and_migrate(&database.db_config()).await?;
            let tenant = tenants::create(&db, &SystemClock, &name)
                .await
                .context("create tenant")?;
            println!("{}", api::graphql::ids::encode_tenant(tenant.id).as_str());
            Ok(())
        }
        Some(Command::Keys {
            command:
                KeyCommand::Create {
                    tenant,
                    role,
                    name,
                    database,
                },
        }) => {
            let db = Db::connect_and_migrate(&database.db_config()).await?;
            let tenant = tenants::find_by_name(&db, &tenant)
                .await
                .context("find tenant")?;
            let issued = service::api_keys::create(&db, &SystemClock, tenant.id, role, &name)
                .await
                .context("create key")?;
            println!("{}", issued.secret);
            Ok(())
        }
        Some(Command::Audit { database }) => audit(&database).await,
        Some(Command::Backup { file, database }) => {
            let db = Db::connect(&database.db_config()).await?;
            service::backup::sqlite(&db, &file).await?;
            println!("backed up to {}", file.display());
            if let Some(key_file) =
                secrets::key_file_for(&database.database_url).filter(|path| path.exists())
            {
                println!(
                    "The secrets key is not in the backup: keep {} too, apart from it (see README, Secrets at rest).",
                    key_file.display()
                );
            }
            Ok(())
        }
        Some(Command::Secrets {
            command:
                SecretsCommand::Rotate {
                    new_key,
                    secrets,
                    database,
                },
        }) => rotate_secrets(new_key.as_deref(), &secrets, &database).await,
    }
}

/// `api secrets rotate`.
async fn rotate_secrets(
    new_key: Option<&str>,
    current: &SecretsArgs,
    database: &DatabaseArgs,
) -> anyhow::Result<()> {
    let old = secrets::resolve_key(
        &database.database_url,
        current.secrets_key.as_deref(),
        false,
    )
    .context("the current secrets key (SECRETS_KEY, or the key file beside the database)")?;
    let given = new_key
        .filter(|k| !k.trim().is_empty())
        .map(|k| SecretsKey::from_base64(k, "the new key (--new-key, SECRETS_KEY_NEW)"))
        .transpose()?;
    // With the key file, the new key waits in `<file>.new` (written before
    // anything is re-sealed, so it can't be lost) and replaces the file
    // once every secret is sealed under it.
    let (new, key_file) = match (&old.origin, given) {
        (KeyOrigin::File { path, .. }, given) => {
            let mut pending = path.clone().into_os_string();
            pending.push(".new");
            let pending = std::path::PathBuf::from(pending);
            let made = given.clone().unwrap_or_else(SecretsKey::generate);
            secrets::create_key_file(&pending, &made)?;
            let new = secrets::read_key_file(&pending)?;
            if given.is_some_and(|g| g != new) {
                anyhow::bail!(
                    "{} holds another new key (an interrupted rotation): finish that one (run without --new-key), or delete the file",
                    pending.display()
                );
            }
            (new, Some((path.clone(), pending)))
        }
        (_, Some(new)) => (new, None),
        (_, None) => anyhow::bail!(
            "give the new key with --new-key or SECRETS_KEY_NEW (make one with `openssl rand -base64 32`)"
        ),
    };
    if new == old.key {
        anyhow::bail!("the new key is the current key");
    }
    let db = Db::connect_and_migrate(&database.db_config()).await?;
    let report = secrets::rotate(&db, &SystemClock, &old.key, &new)
        .await
        .context("re-seal the secrets")?;
    println!(
        "Re-sealed {} secret(s) of {} tenant(s) under key {} ({} already were); key {} no longer opens them.",
        report.resealed,
        report.tenants,
        new.id(),
        report.unchanged,
        old.key.id()
    );
    match key_file {
        Some((path, pending)) => {
            secrets::replace_key_file(&path, &pending)?;
            println!("{} now holds the new key.", path.display());
        }
        None => println!(
            "Start the API and every worker with SECRETS_KEY set to the new key (key id {}).",
            new.id()
        ),
    }
    Ok(())
}

/// `api audit`: every tenant, every wallet, a page at a time.
async fn audit(database: &DatabaseArgs) -> anyhow::Result<()> {
    use service::ledger::audit;
    let db = Db::connect(&database.db_config()).await?;
    let (mut checked, mut broken) = (0u64, 0u64);
    for tenant_id in audit::tenant_ids(db.reader()).await? {
        let mut after = None;
        loop {
            let page =
                audit::audit_page(db.reader(), tenant_id, after, audit::AUDIT_PAGE_MAX).await?;
            checked += page.checked;
            for report in &page.reports {
                broken += 1;
                for problem in &report.problems {
                    println!(
                        "tenant {tenant_id} wallet {} (customer {}): {problem}",
                        report.wallet_id, report.customer_id
                    );
                }
            }
            after = page.last_wallet_id;
            if !page.has_more {
                break;
            }
        }
    }
    println!("audit: {checked} wallets checked, {broken} with problems");
    if broken > 0 {
        std::process::exit(1);
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let _telemetry = worker::observability::init("credits-api", args.log_format)?;
    api::server::run(args, Arc::new(SystemClock), worker::shutdown_signal()).await
}
