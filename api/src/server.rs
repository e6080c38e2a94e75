//! `api serve`: migrate, bootstrap an empty database, serve, and (embedded
//! mode) run the worker in the same process; stop cleanly on a signal.

use std::{future::Future, io::Write as _, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use axum::Router;
use service::{Clock, Db, notifications::TargetPolicy, secrets, tenants};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::ServeArgs,
    graphql,
    http::{self, AppState, HttpLimits, throttle::RateLimits},
};

/// The API's metrics address unless `METRICS_ADDR` says otherwise.
const METRICS_ADDR_DEFAULT: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9464,
));

/// Runs until `shutdown` resolves.
pub async fn run(
    args: ServeArgs,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Bad CORS origins fail the start, not the first browser request.
    http::cors(&args.cors_origins)?;
    // No key (PostgreSQL), a malformed one, or one that does not open the
    // database's secrets: the start fails here, saying which.
    let key = secrets::resolve_key(
        &args.database.database_url,
        args.secrets.secrets_key.as_deref(),
        true,
    )
    .context("the secrets key")?;
    worker::announce_secrets_key(&key);
    let db = Db::connect_and_migrate(&args.database.db_config())
        .await
        .context("connect to and migrate the database")?
        .with_sealer(secrets::Sealer::new(&key.key));
    secrets::prepare(&db, clock.as_ref())
        .await
        .context("secrets at rest")?;
    let listener = TcpListener::bind(args.listen_addr)
        .await
        .with_context(|| format!("listen on {}", args.listen_addr))?;
    let addr = listener.local_addr()?;
    announce(&db, clock.as_ref(), addr).await?;

    let token = CancellationToken::new();
    tokio::spawn({
        let token = token.clone();
        async move {
            shutdown.await;
            token.cancel();
        }
    });
    worker::observability::serve_metrics_as_configured(
        args.metrics_addr,
        METRICS_ADDR_DEFAULT,
        db.clone(),
        clock.clone(),
        token.clone(),
    )
    .await?;
    let worker = args.runs_worker().then(|| {
        tokio::spawn(worker::run(
            db.clone(),
            clock.clone(),
            args.worker_config.clone(),
            token.clone(),
        ))
    });

    let limits = args.http_limits.limits();
    if args.worker_config.webhooks.webhook_allow_private {
        tracing::warn!(
            "WEBHOOK_ALLOW_PRIVATE=true: webhook endpoints may name private addresses (development only)"
        );
    }
    let rate_limits = args.rate_limits.limits();
    tracing::info!(
        api_key = %rate_limits.api_key,
        customer_token = %rate_limits.customer_token,
        auth_failures = %rate_limits.auth_failures,
        trusted_proxies = rate_limits.trusted_proxies.len(),
        "rate limits (per replica)"
    );
    let mut router = app_with_payments(
        db,
        clock,
        limits.clone(),
        args.worker_config.webhooks.targets(),
        &rate_limits,
        &args.payments.mercadopago_api_url,
    );
    if let Some(cors) = http::cors(&args.cors_origins)? {
        router = router.layer(cors);
    }
    http::serve::serve(listener, router, limits, token.clone().cancelled_owned()).await;
    if let Some(worker) = worker {
        token.cancel();
        worker.await.context("worker task")??;
    }
    Ok(())
}

/// The whole HTTP application over a migrated database, with the default
/// [`HttpLimits`], public webhook targets only and no rate limits.
pub fn app(db: Db, clock: Arc<dyn Clock>) -> Router {
    app_with_limits(db, clock, HttpLimits::default())
}

/// The whole HTTP application with the given limits (serve it with
/// [`http::serve::serve`] and the same limits), public webhook targets only,
/// no rate limits.
pub fn app_with_limits(db: Db, clock: Arc<dyn Clock>, limits: HttpLimits) -> Router {
    app_with(db, clock, limits, TargetPolicy::PublicOnly)
}

/// The whole HTTP application with the given limits and webhook target
/// policy (`WEBHOOK_ALLOW_PRIVATE`), without rate limits (tests and
/// benchmarks send many requests with one key).
pub fn app_with(
    db: Db,
    clock: Arc<dyn Clock>,
    limits: HttpLimits,
    webhook_targets: TargetPolicy,
) -> Router {
    app_with_rate_limits(db, clock, limits, webhook_targets, &RateLimits::off())
}

/// The whole HTTP application as `api serve` builds it: the given limits,
/// webhook target policy and rate limits ([`http::throttle`]). Serve it
/// with [`http::serve::serve`], which tells it each request's peer address.
pub fn app_with_rate_limits(
    db: Db,
    clock: Arc<dyn Clock>,
    limits: HttpLimits,
    webhook_targets: TargetPolicy,
    rate_limits: &RateLimits,
) -> Router {
    app_with_payments(
        db,
        clock,
        limits,
        webhook_targets,
        rate_limits,
        service::payments::MERCADOPAGO_API_URL,
    )
}

/// [`app_with_rate_limits`] with Mercado Pago's API at
/// `mercadopago_api_url` (`MERCADOPAGO_API_URL`; tests: a local fake,
/// reached under `webhook_targets` like every provider API).
pub fn app_with_payments(
    db: Db,
    clock: Arc<dyn Clock>,
    limits: HttpLimits,
    webhook_targets: TargetPolicy,
    rate_limits: &RateLimits,
    mercadopago_api_url: &str,
) -> Router {
    let sockets = http::sockets::Sockets::default();
    sockets.watch(db.clone(), clock.clone());
    http::router(AppState {
        schemas: graphql::schemas(db.clone(), clock.clone(), webhook_targets),
        admission: http::Admission::new(&limits),
        limits,
        db,
        clock,
        throttle: http::throttle::Throttle::new(rate_limits),
        sockets,
        payments: http::payments::Payments::new(webhook_targets, mercadopago_api_url),
    })
}

/// On an empty database, creates the `default` tenant and prints its ADMIN
/// key once; always says where GraphiQL is.
async fn announce(db: &Db, clock: &dyn Clock, addr: SocketAddr) -> anyhow::Result<()> {
    let url = format!("http://{addr}/graphql");
    if let Some((tenant, key)) = tenants::bootstrap(db, clock)
        .await
        .context("create the default tenant")?
    {
        // A server must not die because nobody reads its stdout (a closed
        // pipe would make `println!` panic), so write errors are ignored.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "Created tenant {:?} with an ADMIN API key (shown once; keep it):\n\n    {}\n",
            tenant.name, key.secret
        );
        let _ = writeln!(
            out,
            "GraphiQL: {url}\nIn GraphiQL's Headers tab put:\n    {{\"Authorization\": \"Bearer {}\"}}\nthen run:  {{ viewer {{ tenant {{ name }} role }} }}\n",
            key.secret
        );
        let _ = out.flush();
    }
    tracing::info!(%url, "GraphQL listening");
    Ok(())
}
