//! The webhook transport against real HTTP peers: a receiver that answers
//! 200 MiB costs the process almost nothing (issue 15, item 3), and a
//! failure says what kind it was without naming the address.

use std::time::Duration;

use service::notifications::{TransportError, WebhookTransport};
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
    let transport = HttpTransport::new(Duration::from_secs(10)).unwrap();
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
    let transport = HttpTransport::new(Duration::from_secs(5)).unwrap();
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
