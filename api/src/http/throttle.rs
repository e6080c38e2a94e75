//! Throttling: a rate limit per credential, and one on failed
//! authentication per client address.
//!
//! Three keyed token buckets (GCRA, from the `governor` crate):
//!
//! | policy | one bucket per | default | env |
//! |---|---|---|---|
//! | `api-key` | API key | 100/s, burst 200 | `RATE_LIMIT_API_KEY` |
//! | `customer-token` | customer (tenant + customer of the token) | 10/s, burst 20 | `RATE_LIMIT_CUSTOMER_TOKEN` |
//! | `auth-failures` | client address (IPv6: its /64) | 10/min, burst 20 | `RATE_LIMIT_AUTH_FAILURES` |
//!
//! A bucket holds `burst` requests and gains one back every `1/rate`; a
//! request finding it empty is answered 429 `RATE_LIMITED` with
//! `Retry-After` (whole seconds, at least 1) and nothing runs. Every
//! authenticated request (`/graphql`, `/exports/entries.csv`) takes one
//! from its credential's bucket; health, readiness, metrics and the
//! GraphiQL page take none. Every token of a customer shares the
//! customer's bucket, so minting more tokens buys no more requests.
//!
//! Failed authentication: each 401 for a presented credential takes one
//! from the client address's `auth-failures` bucket. Once it is empty, the
//! address is refused with 429 *before* its credential is looked at — a
//! correct secret too — until the bucket has one again (`Retry-After`). The
//! address is the TCP peer; behind a proxy every client shares the proxy's
//! address unless the proxy is listed in `TRUSTED_PROXIES`, in which case
//! the nearest untrusted address of `X-Forwarded-For` counts.
//!
//! Headers (the structured-field form of
//! [draft-ietf-httpapi-ratelimit-headers-10](https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/)):
//! `RateLimit-Policy: "api-key";q=200;w=2` — the bucket holds `q` requests
//! and refills completely in `w` seconds — and `RateLimit: "api-key";r=7;t=1`
//! — `r` requests left now, more within `t` seconds (`t` is left out while
//! the bucket is full). Both go on every answer that took from a bucket:
//! successes, 429s, and the 401s of failed authentication.
//!
//! **Per replica**: each API process keeps its own buckets in memory, so
//! with N replicas behind a load balancer a credential may get up to N
//! times the rate; a restart refills them.
//!
//! **Bounded**: each bucket map holds at most [`RateLimits::keys_max`] keys.
//! Keys whose bucket is full again carry no information and are dropped
//! every [`PRUNE_EVERY`] checks, and at once (at most once a second) when
//! a map is full. A map still full after that (many addresses failing at
//! once) answers new failing addresses 429 at once, and lets requests of
//! credentials it can't track through unthrottled (they are authenticated;
//! logged as a warning).
//!
//! WebSockets don't go through here yet: [`Throttle::check`] is what a
//! socket should call for each operation it starts.

use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    num::NonZeroU32,
    str::FromStr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json,
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use governor::{
    Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
};
use service::api_keys::{Credential, Principal};
use uuid::Uuid;

/// Keys whose bucket is full again are dropped every this many checks.
pub const PRUNE_EVERY: u64 = 4096;

/// Hops of `X-Forwarded-For` read at most, from the right.
const FORWARDED_HOPS_MAX: usize = 16;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A token bucket: `count` requests per `per`, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: NonZeroU32,
    per: Unit,
    burst: NonZeroU32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Second,
    Minute,
    Hour,
}

impl Unit {
    fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Unit::Second => "s",
            Unit::Minute => "min",
            Unit::Hour => "h",
        }
    }
}

/// The largest `count` and `burst` a [`Rate`] takes.
pub const RATE_COUNT_MAX: u32 = 1_000_000;

impl Rate {
    /// `count` per second, `burst` at once (both at least 1, at most
    /// [`RATE_COUNT_MAX`]).
    pub fn per_second(count: u32, burst: u32) -> Self {
        Self::new(count, Unit::Second, burst)
    }

    /// `count` per minute, `burst` at once.
    pub fn per_minute(count: u32, burst: u32) -> Self {
        Self::new(count, Unit::Minute, burst)
    }

    fn new(count: u32, per: Unit, burst: u32) -> Self {
        let clamp = |n: u32| NonZeroU32::new(n.clamp(1, RATE_COUNT_MAX)).unwrap_or(NonZeroU32::MIN);
        Self {
            count: clamp(count),
            per,
            burst: clamp(burst),
        }
    }

    /// How long one request takes to come back.
    pub fn interval(&self) -> Duration {
        // ≥ 1 µs: count ≤ 10^6 per second at most.
        self.per.duration() / self.count.get()
    }

    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    fn quota(&self) -> Quota {
        Quota::with_period(self.interval())
            .unwrap_or_else(|| Quota::per_second(self.count))
            .allow_burst(self.burst)
    }

    /// Whole seconds to refill an empty bucket (the policy's `w`), ≥ 1.
    pub fn window_secs(&self) -> u64 {
        ceil_secs(self.interval() * self.burst.get())
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{},burst={}",
            self.count,
            self.per.as_str(),
            self.burst
        )
    }
}

/// A rate limit setting: a [`Rate`] or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Off,
    Rate(Rate),
}

impl Limit {
    fn rate(self) -> Option<Rate> {
        match self {
            Limit::Off => None,
            Limit::Rate(r) => Some(r),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Off => f.write_str("off"),
            Limit::Rate(r) => r.fmt(f),
        }
    }
}

/// `off`, or `<count>/<unit>[,burst=<n>]` with the unit `s`, `min` or `h`
/// (`sec`, `second`, `m`, `minute`, `hour` too): `50/s,burst=100`,
/// `10/min`. Without `burst`, the burst is the count.
impl FromStr for Limit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Limit::Off);
        }
        let shape = || {
            format!(
                "{s:?}: expected `off` or `<count>/<s|min|h>[,burst=<n>]`, e.g. `50/s,burst=100`"
            )
        };
        let number = |v: &str, what: &str| -> Result<u32, String> {
            match v.trim().parse::<u32>() {
                Ok(n) if (1..=RATE_COUNT_MAX).contains(&n) => Ok(n),
                _ => Err(format!(
                    "{s:?}: the {what} must be a whole number from 1 to {RATE_COUNT_MAX}"
                )),
            }
        };
        let (rate, burst) = match s.split_once(',') {
            Some((rate, rest)) => {
                let (k, v) = rest.split_once('=').ok_or_else(shape)?;
                if !k.trim().eq_ignore_ascii_case("burst") {
                    return Err(shape());
                }
                (rate, Some(number(v, "burst")?))
            }
            None => (s, None),
        };
        let (count, unit) = rate.split_once('/').ok_or_else(shape)?;
        let count = number(count, "count")?;
        let per = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => Unit::Second,
            "m" | "min" | "minute" => Unit::Minute,
            "h" | "hour" => Unit::Hour,
            _ => return Err(shape()),
        };
        Ok(Limit::Rate(Rate::new(count, per, burst.unwrap_or(count))))
    }
}

/// An address or a network (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || format!("{s:?}: expected an IP address or a network like 10.0.0.0/8");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let addr = addr.to_canonical();
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        if prefix > bits {
            return Err(bad());
        }
        // Store the network address itself, so `contains` compares masks.
        let net = IpNet { addr, prefix };
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Ok(IpNet { addr, ..net })
    }
}

/// A comma-separated list of [`IpNet`]s; empty entries are skipped, so an
/// empty string is no network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpNets(pub Vec<IpNet>);

impl FromStr for IpNets {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .filter(|n| !n.trim().is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(IpNets)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The three limits, and what bounds their memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    pub api_key: Limit,
    pub customer_token: Limit,
    pub auth_failures: Limit,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Keys one bucket map holds at most.
    pub keys_max: usize,
}

/// Keys one bucket map holds at most, by default (~100 bytes each).
pub const KEYS_MAX: usize = 100_000;

impl Default for RateLimits {
    /// 100/s burst 200 per API key: a tenant's backend, which may report
    /// usage event by event (the order of the 100/s that public billing
    /// APIs allow a live key). 10/s burst 20 per customer: a browser, whose
    /// dashboard fires a handful of queries at once. 10 failed
    /// authentications a minute, burst 20, per client address: room for a
    /// mistyped or rotated key, none for guessing.
    fn default() -> Self {
        Self {
            api_key: Limit::Rate(Rate::per_second(100, 200)),
            customer_token: Limit::Rate(Rate::per_second(10, 20)),
            auth_failures: Limit::Rate(Rate::per_minute(10, 20)),
            trusted_proxies: Vec::new(),
            keys_max: KEYS_MAX,
        }
    }
}

impl RateLimits {
    /// No throttling at all (tests and benchmarks that send many requests).
    pub fn off() -> Self {
        Self {
            api_key: Limit::Off,
            customer_token: Limit::Off,
            auth_failures: Limit::Off,
            ..Self::default()
        }
    }
}

/// Which bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    ApiKey,
    CustomerToken,
    AuthFailures,
}

impl Policy {
    /// The policy's name in the `RateLimit*` headers.
    pub fn name(self) -> &'static str {
        match self {
            Policy::ApiKey => "api-key",
            Policy::CustomerToken => "customer-token",
            Policy::AuthFailures => "auth-failures",
        }
    }
}

/// A request was let through: what is left of its bucket (for the
/// `RateLimit` headers; nothing when unthrottled).
#[derive(Debug, Clone, Copy, Default)]
pub struct Allowed(Option<Standing>);

#[derive(Debug, Clone, Copy)]
struct Standing {
    policy: Policy,
    rate: Rate,
    remaining: u32,
}

impl Allowed {
    /// Requests left in the bucket now; `None` when not throttled.
    pub fn remaining(&self) -> Option<u32> {
        self.0.map(|s| s.remaining)
    }

    /// Adds `RateLimit-Policy` and `RateLimit` to a response's headers.
    pub fn annotate(&self, headers: &mut HeaderMap) {
        let Some(s) = self.0 else { return };
        let reset = (s.remaining < s.rate.burst()).then(|| ceil_secs(s.rate.interval()));
        insert_fields(headers, s.policy, s.rate, s.remaining, reset);
    }
}

/// A request was refused: its bucket is empty for [`Limited::retry_after`].
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    pub policy: Policy,
    rate: Rate,
    retry_after: Duration,
}

impl Limited {
    /// How long until the bucket has a request again.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// [`Self::retry_after`] in whole seconds, rounded up, at least 1 (the
    /// `Retry-After` value).
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after)
    }

    /// For a person.
    pub fn message(&self) -> String {
        let what = match self.policy {
            Policy::ApiKey => "this API key's rate limit",
            Policy::CustomerToken => "this customer's rate limit",
            Policy::AuthFailures => "too many failed authentications from this address; the limit",
        };
        format!(
            "{what} ({}) is exceeded; retry in {} s",
            self.rate,
            self.retry_after_secs()
        )
    }

    /// 429 `RATE_LIMITED`, in the GraphQL error shape, with `Retry-After`,
    /// `RateLimit-Policy` and `RateLimit`.
    pub fn response(&self) -> Response {
        let secs = self.retry_after_secs();
        let body = serde_json::json!({
            "errors": [{
                "message": self.message(),
                "extensions": {
                    "code": "RATE_LIMITED",
                    "retryable": true,
                    "policy": self.policy.name(),
                    "retryAfterSecs": secs,
                },
            }],
        });
        let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        insert_fields(headers, self.policy, self.rate, 0, Some(secs));
        response
    }
}

fn insert_fields(
    headers: &mut HeaderMap,
    policy: Policy,
    rate: Rate,
    left: u32,
    reset: Option<u64>,
) {
    let name = policy.name();
    let policy_value = format!("\"{name}\";q={};w={}", rate.burst(), rate.window_secs());
    let value = match reset {
        Some(t) => format!("\"{name}\";r={left};t={t}"),
        None => format!("\"{name}\";r={left}"),
    };
    // Only ASCII digits and a fixed name: always a valid header value.
    if let (Ok(p), Ok(v)) = (
        HeaderValue::from_str(&policy_value),
        HeaderValue::from_str(&value),
    ) {
        headers.insert(RATELIMIT_POLICY.clone(), p);
        headers.insert(RATELIMIT.clone(), v);
    }
}

/// Whole seconds, rounded up, at least 1.
fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

type Limiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// One keyed bucket map, bounded.
struct Bucket<K: Hash + Eq + Clone> {
    policy: Policy,
    rate: Rate,
    limiter: Limiter<K>,
    keys_max: usize,
    checks: AtomicU64,
    /// When a full map was last pruned (at most once a second).
    full_pruned_at: Mutex<Option<Instant>>,
}

enum Outcome {
    Allowed(u32),
    Limited(Duration),
    /// The map is full of live keys.
    Full,
}

impl<K: Hash + Eq + Clone> Bucket<K> {
    fn new(policy: Policy, rate: Rate, keys_max: usize) -> Self {
        Self {
            policy,
            rate,
            limiter: RateLimiter::dashmap(rate.quota())
                .with_middleware::<StateInformationMiddleware>(),
            keys_max: keys_max.max(1),
            checks: AtomicU64::new(0),
            full_pruned_at: Mutex::new(None),
        }
    }

    /// Takes one request from `key`'s bucket.
    fn take(&self, key: &K) -> Outcome {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune();
        }
        if self.limiter.len() >= self.keys_max && !self.prune_full() {
            return Outcome::Full;
        }
        match self.limiter.check_key(key) {
            Ok(snapshot) => Outcome::Allowed(snapshot.remaining_burst_capacity()),
            Err(not_until) => {
                Outcome::Limited(not_until.wait_time_from(self.limiter.clock().now()))
            }
        }
    }

    /// Drops the keys whose bucket is full again.
    fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Prunes a full map, at most once a second; whether it has room now.
    fn prune_full(&self) -> bool {
        let now = Instant::now();
        let due = {
            let mut last = self
                .full_pruned_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let due = last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
            if due {
                *last = Some(now);
            }
            due
        };
        if due {
            self.prune();
        }
        let room = self.limiter.len() < self.keys_max;
        if !room && due {
            tracing::warn!(
                policy = self.policy.name(),
                keys = self.limiter.len(),
                keys_max = self.keys_max,
                "rate limit: the bucket map is full of live keys"
            );
        }
        room
    }

    /// [`Self::take`] for an authenticated caller: one the map can't
    /// track is let through (logged by [`Self::prune_full`]).
    fn admit(&self, key: &K) -> Result<Allowed, Limited> {
        match self.take(key) {
            Outcome::Allowed(remaining) => Ok(self.allowed(remaining)),
            Outcome::Limited(wait) => Err(self.limited(wait)),
            Outcome::Full => Ok(Allowed::default()),
        }
    }

    fn limited(&self, retry_after: Duration) -> Limited {
        service::metrics::rate_limited(self.policy.name());
        Limited {
            policy: self.policy,
            rate: self.rate,
            retry_after,
        }
    }

    fn allowed(&self, remaining: u32) -> Allowed {
        Allowed(Some(Standing {
            policy: self.policy,
            rate: self.rate,
            remaining,
        }))
    }
}

/// Failed authentication per client address: the bucket, and the
/// addresses that emptied it (refused before authenticating).
struct FailureGate {
    bucket: Bucket<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// `blocked.len()`, readable without the lock (mostly 0).
    blocked_len: AtomicUsize,
}

impl FailureGate {
    fn check(&self, client: IpAddr) -> Result<(), Limited> {
        if self.blocked_len.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let result = match blocked.get(&client) {
            Some(&until) if until > now => Err(self.bucket.limited(until - now)),
            Some(_) => {
                blocked.remove(&client);
                Ok(())
            }
            None => Ok(()),
        };
        self.blocked_len.store(blocked.len(), Ordering::Relaxed);
        result
    }

    fn record(&self, client: IpAddr) -> Result<Allowed, Limited> {
        match self.bucket.take(&client) {
            Outcome::Allowed(remaining) => Ok(self.bucket.allowed(remaining)),
            Outcome::Limited(wait) => {
                self.block(client, wait);
                Err(self.bucket.limited(wait))
            }
            // Too many addresses failing at once: refuse this failure
            // without remembering the address.
            Outcome::Full => Err(self.bucket.limited(self.bucket.rate.interval())),
        }
    }

    fn block(&self, client: IpAddr, wait: Duration) {
        let now = Instant::now();
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        if blocked.len() >= self.bucket.keys_max {
            // Bounded by the bucket map's cap; expired entries go first.
            // The scan is paid only by a failure over budget with the
            // map full, and the bucket still refuses the address's
            // failures if it doesn't fit.
            blocked.retain(|_, until| *until > now);
        }
        if blocked.len() < self.bucket.keys_max {
            blocked.insert(client, now + wait);
        }
        self.blocked_len.store(blocked.len(), Ordering::Relaxed);
    }
}

/// The rate limits of one API process. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Throttle(Arc<Inner>);

struct Inner {
    api_keys: Option<Bucket<Uuid>>,
    customers: Option<Bucket<(Uuid, Uuid)>>,
    failures: Option<FailureGate>,
    trusted_proxies: Vec<IpNet>,
}

impl Throttle {
    pub fn new(limits: &RateLimits) -> Self {
        let keys_max = limits.keys_max;
        Self(Arc::new(Inner {
            api_keys: limits
                .api_key
                .rate()
                .map(|r| Bucket::new(Policy::ApiKey, r, keys_max)),
            customers: limits
                .customer_token
                .rate()
                .map(|r| Bucket::new(Policy::CustomerToken, r, keys_max)),
            failures: limits.auth_failures.rate().map(|r| FailureGate {
                bucket: Bucket::new(Policy::AuthFailures, r, keys_max),
                blocked: Mutex::new(HashMap::new()),
                blocked_len: AtomicUsize::new(0),
            }),
            trusted_proxies: limits.trusted_proxies.clone(),
        }))
    }

    /// Throttles nothing.
    pub fn off() -> Self {
        Self::new(&RateLimits::off())
    }

    /// Takes one request from the bucket of `principal`'s credential (its
    /// API key, or its token's customer). Call it once per request or
    /// per WebSocket operation, after authenticating.
    pub fn check(&self, principal: &Principal) -> Result<Allowed, Limited> {
        match (&principal.credential, &self.0.api_keys, &self.0.customers) {
            (Credential::ApiKey(id), Some(bucket), _) => bucket.admit(id),
            (Credential::CustomerToken(scope), _, Some(bucket)) => {
                bucket.admit(&(principal.tenant_id, scope.customer_id))
            }
            _ => Ok(Allowed::default()),
        }
    }

    /// Before authenticating: refuses an address whose failed
    /// authentications emptied its bucket, until it has one again.
    pub fn check_client(&self, client: Option<IpAddr>) -> Result<(), Limited> {
        match (&self.0.failures, client) {
            (Some(gate), Some(ip)) => gate.check(client_key(ip)),
            _ => Ok(()),
        }
    }

    /// After a failed authentication from `client`: counts it. `Err` when
    /// that emptied the bucket (answer 429; the address is refused from
    /// now on until it recovers).
    pub fn record_failure(&self, client: Option<IpAddr>) -> Result<Allowed, Limited> {
        match (&self.0.failures, client) {
            (Some(gate), Some(ip)) => gate.record(client_key(ip)),
            _ => Ok(Allowed::default()),
        }
    }

    /// The client's address: the TCP peer, or, when the peer is a trusted
    /// proxy, the nearest address in `X-Forwarded-For` that is not a
    /// trusted proxy. `None` when the peer is unknown (served without the
    /// accept loop of [`super::serve`]).
    pub fn client_addr(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.ip().to_canonical();
        let trusted = |ip: IpAddr| self.0.trusted_proxies.iter().any(|n| n.contains(ip));
        if !trusted(peer) {
            return Some(peer);
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','))
            .take(FORWARDED_HOPS_MAX);
        for hop in hops {
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !trusted(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// One `X-Forwarded-For` entry: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse().ok())
        })
        .map(|ip: IpAddr| ip.to_canonical())
}

/// The failure bucket's key: an IPv4 address, or an IPv6 address's /64
/// (one host usually has a whole /64).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
    }
}

/// The TCP peer of a request, as the accept loop saw it ([`super::serve`]
/// puts it in the request's extensions); `None` under another server.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(s: &str) -> Limit {
        s.parse().unwrap()
    }

    #[test]
    fn limits_parse() {
        assert_eq!(limit("off"), Limit::Off);
        assert_eq!(limit(" OFF "), Limit::Off);
        assert_eq!(
            limit("50/s,burst=100"),
            Limit::Rate(Rate::per_second(50, 100))
        );
        assert_eq!(
            limit("50 / sec , burst = 100"),
            Limit::Rate(Rate::per_second(50, 100))
        );
        assert_eq!(limit("10/min"), Limit::Rate(Rate::per_minute(10, 10)));
        assert_eq!(
            limit("10/m,burst=20"),
            Limit::Rate(Rate::per_minute(10, 20))
        );
        assert_eq!(limit("3600/h").to_string(), "3600/h,burst=3600");
        for s in ["50/s,burst=100", "off", "7/min,burst=1"] {
            assert_eq!(limit(s).to_string(), s);
        }
        for bad in [
            "",
            "50",
            "50/day",
            "0/s",
            "-1/s",
            "50/s,burst=0",
            "50/s,bust=3",
            "50/s,burst",
            "1000001/s",
            "x/s",
            "50/s,burst=100,burst=3",
        ] {
            assert!(bad.parse::<Limit>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn windows_and_intervals() {
        let r = Rate::per_second(50, 100);
        assert_eq!(r.interval(), Duration::from_millis(20));
        assert_eq!(r.window_secs(), 2);
        assert_eq!(Rate::per_minute(10, 20).window_secs(), 120);
        assert_eq!(Rate::per_second(1000, 1).window_secs(), 1);
        assert_eq!(Rate::per_second(3, 1).window_secs(), 1);
        assert_eq!(Rate::per_second(3, 4).window_secs(), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::from_secs(6)), 6);
    }

    #[test]
    fn networks() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(net("10.0.0.0/8").contains(ip("10.1.2.3")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("10.9.9.9/8").contains(ip("10.1.2.3")));
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.0.0.1")));
        assert!(net("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!net("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.1")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(net("fd00::/8").contains(ip("fd12::1")));
        assert!(net("::1").contains(ip("::1")));
        assert_eq!(net("10.9.9.9/8").to_string(), "10.0.0.0/8");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?} parsed");
        }
    }

    fn throttle(trusted: &[&str]) -> Throttle {
        Throttle::new(&RateLimits {
            trusted_proxies: trusted.iter().map(|s| s.parse().unwrap()).collect(),
            ..RateLimits::default()
        })
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn client_addresses() {
        let peer = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let none = throttle(&[]);
        let proxied = throttle(&["10.0.0.0/8", "fd00::/8"]);
        let xff = forwarded(&["198.51.100.9, 203.0.113.5"]);
        // Untrusted peers: their own address, whatever they claim.
        assert_eq!(
            none.client_addr(peer("10.0.0.1:5000"), &xff),
            ip("10.0.0.1")
        );
        assert_eq!(
            proxied.client_addr(peer("192.0.2.1:5000"), &xff),
            ip("192.0.2.1")
        );
        // A trusted proxy: the nearest untrusted hop (not the spoofable left).
        assert_eq!(
            proxied.client_addr(peer("10.0.0.1:5000"), &xff),
            ip("203.0.113.5")
        );
        assert_eq!(
            proxied.client_addr(
                peer("10.0.0.1:5000"),
                &forwarded(&["198.51.100.9", "203.0.113.5:4711, 10.0.0.2"])
            ),
            ip("203.0.113.5")
        );
        assert_eq!(
            proxied.client_addr(peer("[fd00::1]:5000"), &forwarded(&["[2001:db8::7]:80"])),
            ip("2001:db8::7")
        );
        assert_eq!(
            proxied.client_addr(peer("[::ffff:10.0.0.1]:5000"), &xff),
            ip("203.0.113.5")
        );
        // No header, garbage, or only proxies: the last address known.
        assert_eq!(
            proxied.client_addr(peer("10.0.0.1:5000"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        assert_eq!(
            proxied.client_addr(peer("10.0.0.1:5000"), &forwarded(&["junk"])),
            ip("10.0.0.1")
        );
        assert_eq!(
            proxied.client_addr(peer("10.0.0.1:5000"), &forwarded(&["10.0.0.3, 10.0.0.2"])),
            ip("10.0.0.3")
        );
        assert_eq!(none.client_addr(None, &xff), None);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(client_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }

    fn principal(credential: Credential) -> Principal {
        Principal {
            tenant_id: Uuid::nil(),
            tenant_name: "t".into(),
            role: service::api_keys::Role::Admin,
            credential,
        }
    }

    #[test]
    fn a_credential_gets_its_burst_then_waits() {
        let t = Throttle::new(&RateLimits {
            api_key: Limit::Rate(Rate::per_minute(1, 3)),
            ..RateLimits::default()
        });
        let key = principal(Credential::ApiKey(Uuid::from_u128(1)));
        let other = principal(Credential::ApiKey(Uuid::from_u128(2)));
        for left in [2, 1, 0] {
            assert_eq!(t.check(&key).unwrap().remaining(), Some(left));
        }
        let limited = t.check(&key).unwrap_err();
        assert_eq!(limited.policy, Policy::ApiKey);
        assert!(limited.retry_after() <= Duration::from_secs(60));
        assert!(limited.retry_after_secs() >= 59, "{limited:?}");
        let response = limited.response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let h = response.headers();
        assert_eq!(h[&RATELIMIT_POLICY], "\"api-key\";q=3;w=180");
        assert_eq!(
            h[&RATELIMIT],
            format!("\"api-key\";r=0;t={}", limited.retry_after_secs()).as_str()
        );
        assert_eq!(
            h[header::RETRY_AFTER],
            limited.retry_after_secs().to_string().as_str()
        );
        assert_eq!(t.check(&other).unwrap().remaining(), Some(2));
    }

    #[test]
    fn off_throttles_nothing() {
        let t = Throttle::off();
        let key = principal(Credential::ApiKey(Uuid::from_u128(1)));
        for _ in 0..1000 {
            assert_eq!(t.check(&key).unwrap().remaining(), None);
        }
        let ip = Some("192.0.2.1".parse().unwrap());
        for _ in 0..1000 {
            assert!(t.record_failure(ip).is_ok());
            assert!(t.check_client(ip).is_ok());
        }
    }

    #[test]
    fn failures_block_an_address_until_it_recovers() {
        let t = Throttle::new(&RateLimits {
            auth_failures: Limit::Rate(Rate::per_minute(1, 2)),
            ..RateLimits::default()
        });
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        assert!(t.check_client(a).is_ok());
        assert_eq!(t.record_failure(a).unwrap().remaining(), Some(1));
        assert_eq!(t.record_failure(a).unwrap().remaining(), Some(0));
        assert!(t.check_client(a).is_ok());
        let refused = t.record_failure(a).unwrap_err();
        assert_eq!(refused.policy, Policy::AuthFailures);
        let blocked = t.check_client(a).unwrap_err();
        assert!(blocked.retry_after_secs() >= 59);
        assert!(t.check_client(b).is_ok());
        assert!(t.check_client(None).is_ok());
    }

    #[test]
    fn maps_are_bounded() {
        let t = Throttle::new(&RateLimits {
            api_key: Limit::Rate(Rate::per_minute(1, 1)),
            auth_failures: Limit::Rate(Rate::per_minute(1, 1)),
            keys_max: 10,
            ..RateLimits::default()
        });
        for i in 0..1000u32 {
            let key = principal(Credential::ApiKey(Uuid::from_u128(u128::from(i))));
            let _ = t.check(&key);
            let ip = Some(IpAddr::from(i.to_be_bytes()));
            let _ = t.record_failure(ip);
            let _ = t.record_failure(ip);
        }
        let inner = &t.0;
        assert!(inner.api_keys.as_ref().unwrap().limiter.len() <= 10);
        let gate = inner.failures.as_ref().unwrap();
        assert!(gate.bucket.limiter.len() <= 10);
        assert!(gate.blocked.lock().unwrap().len() <= 10);
        // A new address failing while the map is full is refused at once.
        assert!(
            t.record_failure(Some("203.0.113.1".parse().unwrap()))
                .is_err()
        );
    }
}
