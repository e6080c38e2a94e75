//! What the `api` and `worker` processes tell an operator (issue 19):
//!
//! - **Logs** on stderr, human-formatted (default) or one JSON object per
//!   line with `LOG_FORMAT=json` (timestamp, level, target, message, the
//!   fields of the spans it happened in — a request's `trace_id` among
//!   them); filtered by `RUST_LOG` (default `info,sqlx=warn`).
//! - **Traces** over OTLP/HTTP (protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   is set (the standard `OTEL_*` variables apply: `/v1/traces` is
//!   appended to the endpoint, `OTEL_SERVICE_NAME` overrides the name); W3C
//!   `traceparent` is read from requests and written on webhooks.
//! - **Metrics** in Prometheus text on a listener of their own
//!   (`METRICS_ADDR`, never the API's port): [`serve_metrics`]. Recorded
//!   through the `metrics` facade ([`service::metrics`] names them).
//!
//! The two processes share this module so their outputs agree.

use std::{net::SocketAddr, sync::Arc, sync::OnceLock};

use anyhow::Context as _;
use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::{propagation::Injector, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use service::{Clock, Db};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::{
    EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt,
};

/// How logs are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// For people (the default).
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// What [`init`] set up; dropping it flushes the spans not yet exported.
#[must_use = "keep it for the process's life: dropping it stops trace export"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT` is set).
    pub fn exports_traces(&self) -> bool {
        self.traces.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the process's log subscriber (and the OTLP exporter when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set) and the metrics recorder.
/// `service_name` names the process in traces (`credits-api`,
/// `credits-worker`).
pub fn init(service_name: &str, format: LogFormat) -> anyhow::Result<Telemetry> {
    let filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let endpoint_set = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .is_ok_and(|v| !v.trim().is_empty());
    let traces = if endpoint_set {
        use opentelemetry_otlp::WithExportConfig as _;
        // The exporter's reqwest client (https endpoints) uses rustls on
        // ring, as webhooks do.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .context("the OTLP exporter (OTEL_EXPORTER_OTLP_ENDPOINT)")?;
        let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service_name.to_owned());
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name(name).build())
                .build(),
        )
    } else {
        None
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let otel = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("credits"))
            .with_filter(filter())
    });
    let fmt = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .context("install the log subscriber")?;
    metrics_handle();
    Ok(Telemetry { traces })
}

/// Histogram buckets (seconds) for every `*_seconds` histogram: from
/// half a millisecond (a consume on SQLite) to 30 s (a slow webhook).
const BUCKETS_SECONDS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Finer buckets for GraphQL operations: from 1 ms to 1 s the E24 series
/// (1.0, 1.1, 1.2, 1.3, 1.5 … 9.1 per decade, steps of about 10 %), about
/// 1.25 apart below and above, 0.25 ms to 30 s in all; so a p99 read from
/// the histogram is within a few per cent of the true one rather than a
/// bucket's width (×2.5 above). 92 buckets per operation: the operations
/// are bounded by the schema's root fields.
const GRAPHQL_BUCKETS_SECONDS: [f64; 92] = [
    0.00025, 0.0003, 0.0004, 0.0005, 0.0006, 0.00075, 0.001, 0.0011, 0.0012, 0.0013, 0.0015,
    0.0016, 0.0018, 0.002, 0.0022, 0.0024, 0.0027, 0.003, 0.0033, 0.0036, 0.0039, 0.0043, 0.0047,
    0.0051, 0.0056, 0.0062, 0.0068, 0.0075, 0.0082, 0.0091, 0.01, 0.011, 0.012, 0.013, 0.015,
    0.016, 0.018, 0.02, 0.022, 0.024, 0.027, 0.03, 0.033, 0.036, 0.039, 0.043, 0.047, 0.051, 0.056,
    0.062, 0.068, 0.075, 0.082, 0.091, 0.1, 0.11, 0.12, 0.13, 0.15, 0.16, 0.18, 0.2, 0.22, 0.24,
    0.27, 0.3, 0.33, 0.36, 0.39, 0.43, 0.47, 0.51, 0.56, 0.62, 0.68, 0.75, 0.82, 0.91, 1.0, 1.2,
    1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.5, 10.0, 15.0, 20.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use (`None` if
/// another recorder was installed first).
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(service::metrics::GRAPHQL_REQUEST_DURATION.into()),
                    &GRAPHQL_BUCKETS_SECONDS,
                )
                .ok()?
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS_SECONDS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            service::metrics::describe();
            Some(handle)
        })
        .as_ref()
}

/// Serves metrics as `METRICS_ADDR` says ([`serve_metrics`]): `None`
/// (unset) is `default`, and then a port already taken (another process
/// on the host already serves there, say a second API or a test) is
/// logged and the process goes on without a metrics listener; an address
/// that was asked for must be free, or the start fails. Returns the bound
/// address, if any.
pub async fn serve_metrics_as_configured(
    setting: Option<MetricsAddr>,
    default: SocketAddr,
    db: Db,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(addr) = setting.map_or(Some(default), |s| s.0) else {
        return Ok(None);
    };
    match serve_metrics(addr, db, clock, shutdown).await {
        Ok(bound) => Ok(Some(bound)),
        Err(e) if setting.is_none() => {
            tracing::warn!(
                error = format!("{e:#}"),
                "no metrics listener: the default METRICS_ADDR is taken; set METRICS_ADDR (or off)"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `METRICS_ADDR`: where a process serves `GET /metrics`, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<SocketAddr>);

impl std::str::FromStr for MetricsAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        s.parse()
            .map(|a| Self(Some(a)))
            .map_err(|_| format!("{s:?}: expected host:port (e.g. 127.0.0.1:9464) or off"))
    }
}

#[derive(Clone)]
struct Scrape {
    db: Db,
    clock: Arc<dyn Clock>,
    handle: &'static PrometheusHandle,
}

/// Serves `GET /metrics` on `addr` until `shutdown` is cancelled; returns
/// the bound address (port 0 picks one) once listening, and logs it.
/// The gauges read from the database (outbox backlog, jobs, pools) are
/// refreshed at each scrape.
pub async fn serve_metrics(
    addr: SocketAddr,
    db: Db,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let handle = metrics_handle().context("another metrics recorder is installed")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen on {addr} (METRICS_ADDR)"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape { db, clock, handle });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    });
    tracing::info!(addr = %bound, url = %format!("http://{bound}/metrics"), "metrics listening");
    Ok(bound)
}

/// How long a scrape waits for the database before answering with what it
/// has (the gauges read from it stay as last read).
const SCRAPE_DB_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

async fn scrape(State(s): State<Scrape>) -> impl IntoResponse {
    let refreshed = tokio::time::timeout(
        SCRAPE_DB_WITHIN,
        service::gauges::refresh(&s.db, s.clock.now()),
    )
    .await;
    match refreshed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics: reading the database failed"),
        Err(_) => tracing::warn!("metrics: the database did not answer in time"),
    }
    s.handle.run_upkeep();
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.handle.render(),
    )
}

/// The W3C `traceparent` (and `tracestate`) of the current span, as
/// headers for an outgoing request; empty when traces are not exported.
pub fn trace_headers() -> Vec<(String, String)> {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    struct Headers(Vec<(String, String)>);
    impl Injector for Headers {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }
    let context = tracing::Span::current().context();
    let mut headers = Headers(Vec::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut headers));
    headers.0
}
