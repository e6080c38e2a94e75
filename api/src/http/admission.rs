//! What one process admits at a time, and for how long: the bounds that
//! keep slow or numerous clients from starving everyone else.
//!
//! | bound | default | env |
//! |---|---|---|
//! | open connections | 1,024 | `CONNECTIONS_MAX` |
//! | reading a request's headers | 10 s | `HEADER_READ_TIMEOUT_SECS` |
//! | reading a request's body | 10 s | `BODY_READ_TIMEOUT_SECS` |
//! | GraphQL requests executing at once | 256 | `REQUESTS_IN_FLIGHT_MAX` |
//! | waiting for a slot among them | 5 s, then 503 `OVERLOADED` | — |
//! | one GraphQL request | 30 s, then 504 `TIMEOUT` | `REQUEST_TIMEOUT_SECS` |
//!
//! Connections over the cap wait in the kernel's accept queue; health
//! checks (`/healthz`, `/readyz`) don't take a request slot.

use std::{sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounds above (all configurable: see `config::HttpLimitArgs`).
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub connections_max: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub requests_in_flight_max: usize,
    pub admission_wait: Duration,
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            connections_max: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            requests_in_flight_max: 256,
            admission_wait: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Slots for GraphQL requests in flight.
#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    wait: Duration,
}

/// The server has no slot free within the wait.
#[derive(Debug)]
pub struct Overloaded;

impl Admission {
    pub fn new(limits: &HttpLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.requests_in_flight_max.max(1))),
            wait: limits.admission_wait,
        }
    }

    /// A slot, held until the permit drops.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, Overloaded> {
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Overloaded),
        }
    }
}
