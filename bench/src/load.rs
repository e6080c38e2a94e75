//! The load generator: N concurrent clients over real HTTP, each sending
//! one request after another (closed loop), or paced to a total rate.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::server::Api;

/// What one load run saw.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    pub secs: f64,
    /// Sorted latencies, microseconds.
    pub latencies_us: Vec<u64>,
    /// The first error answer, to show when something went wrong.
    pub first_error: Option<String>,
}

impl Stats {
    pub fn per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.requests as f64 / self.secs
        } else {
            0.0
        }
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies_us, p)
    }

    pub fn from_latencies(mut latencies_us: Vec<u64>, secs: f64) -> Self {
        latencies_us.sort_unstable();
        Self {
            requests: latencies_us.len() as u64,
            errors: 0,
            secs,
            latencies_us,
            first_error: None,
        }
    }

    /// `req/s, p50, p99` in words.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{:.0}/s, p50 {:.2} ms, p99 {:.2} ms ({} in {:.1} s",
            self.per_sec(),
            self.percentile_ms(50.0),
            self.percentile_ms(99.0),
            self.requests,
            self.secs
        );
        if self.errors > 0 {
            s.push_str(&format!(", {} errors", self.errors));
        }
        s.push(')');
        s
    }
}

/// `p` percentile of sorted microseconds, in milliseconds.
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    sorted_us[i] as f64 / 1000.0
}

/// Builds the JSON body of request `i` of client `client`.
pub type Body = Arc<dyn Fn(usize, u64) -> String + Send + Sync>;

/// Runs `clients` concurrent clients for `duration` (at most `rate`
/// requests per second in total when given).
pub async fn run(
    api: &Api,
    clients: usize,
    duration: Duration,
    rate: Option<f64>,
    body: Body,
) -> Stats {
    run_until(
        api,
        clients,
        duration,
        rate,
        body,
        Arc::new(AtomicBool::new(false)),
    )
    .await
}

/// [`run`], ending early once `stop` is set (a request under way is
/// finished and counted; none is sent after).
pub async fn run_until(
    api: &Api,
    clients: usize,
    duration: Duration,
    rate: Option<f64>,
    body: Body,
    stop: Arc<AtomicBool>,
) -> Stats {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(clients);
    for client_no in 0..clients {
        let http = api.client.clone();
        let url = api.url.clone();
        let key = api.key.clone();
        let body = body.clone();
        let stop = stop.clone();
        let interval = rate.map(|r| Duration::from_secs_f64(clients as f64 / r));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut i = 0u64;
            // Pacing: spread the clients' slots over one interval.
            let mut next = interval.map(|iv| start + iv.mul_f64(client_no as f64 / clients as f64));
            loop {
                if let (Some(at), Some(iv)) = (next, interval) {
                    if at >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                    next = Some(at + iv);
                }
                let sent = Instant::now();
                if sent >= deadline || stop.load(Ordering::Relaxed) {
                    break;
                }
                let answer = http
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body(client_no, i))
                    .send()
                    .await;
                let ok = match answer {
                    Ok(r) => {
                        let status = r.status();
                        match r.bytes().await {
                            Ok(b) if status.is_success() && !contains(&b, b"\"errors\"") => true,
                            Ok(b) => {
                                first_error.get_or_insert_with(|| {
                                    format!("{status}: {}", String::from_utf8_lossy(&b))
                                });
                                false
                            }
                            Err(e) => {
                                first_error.get_or_insert_with(|| e.to_string());
                                false
                            }
                        }
                    }
                    Err(e) => {
                        first_error.get_or_insert_with(|| e.to_string());
                        false
                    }
                };
                if ok {
                    latencies.push(sent.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (latencies, errors, first_error)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        if let Ok((l, e, f)) = t.await {
            all.extend(l);
            errors += e;
            if first_error.is_none() {
                first_error = f;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut stats = Stats::from_latencies(all, secs);
    stats.errors = errors;
    stats.first_error = first_error;
    stats
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_sorted_microseconds() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 50.0), 50.0);
        assert_eq!(percentile_ms(&v, 99.0), 99.0);
        assert_eq!(percentile_ms(&v, 100.0), 100.0);
        assert_eq!(percentile_ms(&[], 99.0), 0.0);
    }
}
