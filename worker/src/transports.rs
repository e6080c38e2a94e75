//! The real transports behind `service::notifications`: lettre for email
//! (SMTP, or `.eml` files when `SMTP_URL` is unset) and reqwest for
//! webhooks (rustls on ring, no redirects followed, a hard timeout, no
//! proxy, and only the targets its [`TargetPolicy`] allows: IP-literal
//! URLs are checked before sending, names by a resolver that drops every
//! address that is not public, so the address connected to is the one
//! checked).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};
use service::notifications::{
    EmailMessage, HttpReply, Mailer, SendError, TargetPolicy, TransportError, WebhookTransport,
    targets::{self, Refusal},
};
use service::payments::{PROVIDER_REPLY_MAX_BYTES, ProviderApi, ProviderReply};

use crate::MailConfig;

/// How long an SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a webhook endpoint has to answer.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

pub enum LettreMailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    Files {
        transport: AsyncFileTransport<Tokio1Executor>,
        from: Mailbox,
    },
}

impl LettreMailer {
    /// From `SMTP_URL` (`smtp://host:port` plain or STARTTLS per
    /// `?tls=`, `smtps://user:pass@host:port` implicit TLS) or, without it,
    /// `.eml` files under `MAIL_DIR`.
    pub fn from_config(config: &MailConfig) -> Result<Self, String> {
        let from: Mailbox = config
            .mail_from
            .parse()
            .map_err(|e| format!("MAIL_FROM {:?}: {e}", config.mail_from))?;
        match &config.smtp_url {
            Some(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| format!("SMTP_URL: {e}"))?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build();
                Ok(LettreMailer::Smtp { transport, from })
            }
            None => {
                std::fs::create_dir_all(&config.mail_dir)
                    .map_err(|e| format!("MAIL_DIR {}: {e}", config.mail_dir.display()))?;
                Ok(LettreMailer::Files {
                    transport: AsyncFileTransport::new(&config.mail_dir),
                    from,
                })
            }
        }
    }

    fn from(&self) -> &Mailbox {
        match self {
            LettreMailer::Smtp { from, .. } | LettreMailer::Files { from, .. } => from,
        }
    }
}

impl Mailer for LettreMailer {
    async fn send(&self, message: &EmailMessage) -> Result<(), SendError> {
        let to: Mailbox = message.to.parse().map_err(|e| SendError {
            permanent: true,
            message: format!("bad address {:?}: {e}", message.to),
        })?;
        let email = Message::builder()
            .from(self.from().clone())
            .to(to)
            .subject(&message.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(message.body.clone())
            .map_err(|e| SendError {
                permanent: true,
                message: e.to_string(),
            })?;
        match self {
            LettreMailer::Smtp { transport, .. } => transport
                .send(email)
                .await
                .map(|_| ())
                .map_err(|e| SendError {
                    permanent: e.is_permanent(),
                    message: e.to_string(),
                }),
            LettreMailer::Files { transport, .. } => transport
                .send(email)
                .await
                .map(|_| ())
                .map_err(|e| SendError {
                    permanent: false,
                    message: e.to_string(),
                }),
        }
    }
}

/// How much of a webhook endpoint's answer is read (the first 500
/// characters are kept as the attempt's snippet).
pub const RESPONSE_READ_MAX: usize = 4 * 1024;

/// What kind of failure a request met, without the URL or address it was
/// sent to (an attempt log must not map a network).
fn failure_kind(e: reqwest::Error) -> String {
    let e = e.without_url();
    let kind = if e.is_connect() {
        "could not connect"
    } else if e.is_request() {
        "the request failed"
    } else {
        "the exchange failed"
    };
    // The innermost cause says why (refused, reset, DNS, TLS), without
    // an address.
    let mut cause: &dyn std::error::Error = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let why = cause.to_string();
    if why.is_empty() || why.contains("://") {
        kind.to_owned()
    } else {
        format!("{kind}: {why}")
    }
}

/// What the resolver answers when a name has no public address left.
#[derive(Debug, thiserror::Error)]
#[error("the target is not a public address")]
struct NotPublic;

/// Resolves names (a static table first, like `/etc/hosts`, then the
/// system resolver) and, unless private targets are allowed, keeps public
/// addresses only: the connector connects to one of those.
struct CheckingResolver {
    targets: TargetPolicy,
    hosts: Vec<(String, std::net::IpAddr)>,
}

impl reqwest::dns::Resolve for CheckingResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let fixed: Vec<SocketAddr> = self
            .hosts
            .iter()
            .filter(|(n, _)| *n == host)
            .map(|(_, ip)| SocketAddr::new(*ip, 0))
            .collect();
        let allow_private = self.targets.allows_private();
        Box::pin(async move {
            let found: Vec<SocketAddr> = if fixed.is_empty() {
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect()
            } else {
                fixed
            };
            let addrs: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| allow_private || targets::is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(NotPublic) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether a request failed because the resolver refused every address.
fn refused_by_resolver(e: &reqwest::Error) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        if c.is::<NotPublic>() {
            return true;
        }
        cause = c.source();
    }
    false
}

pub struct HttpTransport {
    client: reqwest::Client,
    targets: TargetPolicy,
}

impl HttpTransport {
    pub fn new(timeout: Duration, targets: TargetPolicy) -> Result<Self, String> {
        Self::with_hosts(timeout, targets, Vec::new())
    }

    /// [`HttpTransport::new`] with names answered from `hosts` instead of
    /// DNS (tests: a name that resolves to loopback at delivery time); their
    /// addresses are checked like any other.
    pub fn with_hosts(
        timeout: Duration,
        targets: TargetPolicy,
        hosts: Vec<(String, std::net::IpAddr)>,
    ) -> Result<Self, String> {
        // One process-wide TLS provider; a second install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect on our behalf, to an address not checked.
            .no_proxy()
            .user_agent("credits-engine-webhooks/1")
            .dns_resolver(Arc::new(CheckingResolver { targets, hosts }));
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(Self { client, targets })
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

impl WebhookTransport for HttpTransport {
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> Result<HttpReply, TransportError> {
        // The rules that need no DNS (scheme, IP literals, local names);
        // the resolver checks what names resolve to.
        let url = targets::check_url(url, self.targets).map_err(TransportError::Refused)?;
        let mut request = self.client.post(url).body(body.to_owned());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        // The delivery's trace context (W3C traceparent), when traced.
        for (name, value) in crate::observability::trace_headers() {
            request = request.header(name, value);
        }
        let mut response = request.send().await.map_err(|e| {
            if refused_by_resolver(&e) {
                TransportError::Refused(Refusal::NotPublicAddress)
            } else if e.is_timeout() {
                TransportError::Timeout
            } else {
                TransportError::Connect(failure_kind(e))
            }
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        // At most RESPONSE_READ_MAX bytes of the answer: the rest is never
        // read (the connection is dropped with the response).
        let mut head = Vec::new();
        while head.len() < RESPONSE_READ_MAX {
            match response.chunk().await {
                Ok(Some(chunk)) => head.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(TransportError::Timeout),
                Err(_) => break,
            }
        }
        drop(response);
        head.truncate(RESPONSE_READ_MAX);
        let text = String::from_utf8_lossy(&head);
        Ok(HttpReply {
            status,
            retry_after,
            body_snippet: text.chars().take(500).collect(),
        })
    }
}

/// How long a payment provider's API has to answer (Mercado Pago waits
/// about 22 s for our answer to its notification, and we fetch first).
pub const PROVIDER_API_TIMEOUT: Duration = Duration::from_secs(8);

/// Payment providers' APIs (`service::payments`), under the same rules as
/// webhooks: the target policy, no redirects, no proxy, the client's
/// timeout, and at most [`PROVIDER_REPLY_MAX_BYTES`] of an answer read.
impl ProviderApi for HttpTransport {
    async fn get(&self, url: &str, bearer_token: &str) -> Result<ProviderReply, String> {
        let url = targets::check_url(url, self.targets).map_err(|r| r.kind().to_owned())?;
        let mut response = self
            .client
            .get(url)
            .bearer_auth(bearer_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                if refused_by_resolver(&e) {
                    Refusal::NotPublicAddress.kind().to_owned()
                } else if e.is_timeout() {
                    "timed out".to_owned()
                } else {
                    failure_kind(e)
                }
            })?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > PROVIDER_REPLY_MAX_BYTES {
                        return Err(format!(
                            "the answer is larger than {PROVIDER_REPLY_MAX_BYTES} bytes"
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err("timed out".to_owned()),
                Err(e) => return Err(failure_kind(e)),
            }
        }
        Ok(ProviderReply { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("soon"), None);
        let later = chrono::Utc::now() + chrono::Duration::seconds(90);
        let parsed = retry_after(&later.to_rfc2822()).unwrap();
        assert!(parsed > Duration::from_secs(80) && parsed <= Duration::from_secs(90));
    }
}
