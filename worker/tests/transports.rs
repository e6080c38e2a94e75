//! The webhook transport against real HTTP peers: a receiver that answers
//! 200 MiB costs the process almost nothing (issue 15, item 3), and a
//! failure says what kind it was without naming the address.

use std::time::Duration;

use service::notifications::{TargetPolicy, TransportError, WebhookTransport};
use worker::transports::{HttpTransport, RESPONSE_READ_MAX};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

#[tokio::test]
async fn a_huge_answer_is_read_only_as_far_as_the_snippet() {
    // 200 MiB in 64 KiB chunks, made as they are sent.
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            let chunk = axum::body::Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = tokio_stream_of(chunk, 3_200);
            axum::body::Body::from_stream(stream)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let transport =
        HttpTransport::new(Duration::from_secs(10), TargetPolicy::AllowPrivate).unwrap();
    let url = format!("http://{addr}/hook");
    // Warm up, then measure four deliveries (the finding: 54 MB → 753 MB).
    transport.post(&url, &[], "{}").await.unwrap();
    let before = rss_bytes();
    for _ in 0..4 {
        let reply = transport.post(&url, &[], "{}").await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body_snippet.len(), 500);
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < 20 << 20,
        "grew by {grown} bytes (read at most {RESPONSE_READ_MAX} per answer)"
    );
}

#[tokio::test]
async fn a_failure_says_its_kind_not_the_address() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let transport = HttpTransport::new(Duration::from_secs(5), TargetPolicy::AllowPrivate).unwrap();
    let Err(TransportError::Connect(message)) = transport
        .post(&format!("http://127.0.0.1:{port}/hook"), &[], "{}")
        .await
    else {
        panic!("a closed port is a connection failure");
    };
    assert!(message.starts_with("could not connect"), "{message}");
    assert!(
        !message.contains("127.0.0.1") && !message.contains(&port.to_string()),
        "{message}"
    );
}

/// `n` copies of `chunk` as a body stream.
fn tokio_stream_of(
    chunk: axum::body::Bytes,
    n: usize,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> {
    futures_util::stream::iter(std::iter::repeat_n(chunk, n).map(Ok))
}

/// SSRF at delivery (issue 15, item 2): under the default policy every
/// refused family is refused before anything is sent, IP literals by their
/// address, names by what they resolve to; the development setting lets
/// them through.
#[tokio::test]
async fn private_targets_are_refused_at_delivery_by_default() {
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let hosts = vec![("hooks.rebind.test".to_owned(), "127.0.0.1".parse().unwrap())];
    let public = HttpTransport::with_hosts(
        Duration::from_secs(5),
        TargetPolicy::PublicOnly,
        hosts.clone(),
    )
    .unwrap();
    for url in [
        format!("https://127.0.0.1:{port}/hook"),
        format!("https://localhost:{port}/hook"),
        format!("https://0.0.0.0:{port}/hook"),
        "https://2130706433/hook".to_owned(),
        "https://127.1/hook".to_owned(),
        format!("https://[::1]:{port}/hook"),
        format!("https://[::ffff:127.0.0.1]:{port}/hook"),
        "https://10.0.0.1:6379/".to_owned(),
        "https://192.168.1.1/hook".to_owned(),
        "https://100.64.0.1/hook".to_owned(),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        "https://metadata.google.internal/computeMetadata/v1/".to_owned(),
        format!("https://hooks.rebind.test:{port}/hook"),
        format!("http://127.0.0.1:{port}/hook"),
    ] {
        let Err(TransportError::Refused(why)) = public.post(&url, &[], "{}").await else {
            panic!("{url} should be refused");
        };
        assert!(!why.kind().contains("127."), "{url}: {}", why.kind());
    }
    let dev = HttpTransport::with_hosts(Duration::from_secs(5), TargetPolicy::AllowPrivate, hosts)
        .unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://hooks.rebind.test:{port}/hook"),
    ] {
        assert_eq!(
            dev.post(&url, &[], "{}").await.unwrap().status,
            200,
            "{url}"
        );
    }
}
