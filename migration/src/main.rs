//! `cargo run -p migration -- up|down|status|fresh` against `DATABASE_URL`
//! (default: the embedded SQLite file the API uses).

use sea_orm_migration::sea_orm::Database;

#[tokio::main]
async fn main() {
    let url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| migration::DEFAULT_DATABASE_URL.into());
    sea_orm_migration::cli::run_cli_with_custom_connection(migration::Migrator, async || {
        Database::connect(url).await
    })
    .await;
}
