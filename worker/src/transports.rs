//! The real transports behind `service::notifications`: lettre for email
//! (SMTP, or `.eml` files when `SMTP_URL` is unset) and reqwest for
//! webhooks (rustls on ring, no redirects followed, a hard timeout).

use std::time::Duration;

use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};
use service::notifications::{
    EmailMessage, HttpReply, Mailer, SendError, TransportError, WebhookTransport,
};

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

pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    pub fn new(timeout: Duration) -> Result<Self, String> {
        // One process-wide TLS provider; a second install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("credits-engine-webhooks/1")
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client })
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
        let mut request = self.client.post(url).body(body.to_owned());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let mut response = request.send().await.map_err(|e| {
            if e.is_timeout() {
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
