//! Emails: what they say, and sending them with retries.
//!
//! A low-balance email goes to the customer's address once per crossing
//! (the wallet's state re-arms when the balance climbs back above the
//! threshold); depletion is its own message. Subjects and bodies name the
//! credit system with its unit labels and the amounts. A refused address
//! (permanent SMTP error) is not retried; other failures are retried on
//! [`super::retry::EMAIL_DELAYS`]. Every email is kept (`emailDeliveries`).

use chrono::{DateTime, Duration, Utc};
use entity::{email_attempt, email_delivery, webhook_endpoint};
use rust_decimal::Decimal;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    EmailMessage, Error, Mailer,
    retry::{self, EMAIL_DELAYS},
};
use crate::{
    Clock, Db,
    credit_systems::CreditSystem,
    ids::EmailId,
    outbox::EventType,
    pagination::{Page, PageRequest},
};

const LEASE: Duration = Duration::minutes(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailDelivery {
    pub id: EmailId,
    pub kind: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<email_delivery::Model> for EmailDelivery {
    fn from(m: email_delivery::Model) -> Self {
        Self {
            id: EmailId::from_uuid(m.id),
            kind: m.kind,
            to: m.to_address,
            subject: m.subject,
            body: m.body,
            status: m.status,
            attempts: m.attempts,
            last_error: m.last_error,
            created_at: m.created_at,
            sent_at: m.sent_at,
        }
    }
}

/// `12.5 tokens`, `1 token`.
pub fn amount_with_unit(amount: Decimal, cs: &CreditSystem) -> String {
    let amount = amount.normalize();
    let unit = if amount == Decimal::ONE {
        &cs.unit_singular
    } else {
        &cs.unit_plural
    };
    format!("{amount} {unit}")
}

// ---------------------------------------------------------------- templates

/// An email's words: a file under `service/templates/email/`, embedded at
/// build time. Its first line is `Subject: …`, then one blank line, then
/// the body. `{name}` is a placeholder; `{{` is a literal `{`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    /// The file's name without `.txt`, also the email's `kind`.
    pub name: &'static str,
    pub source: &'static str,
}

macro_rules! template {
    ($name:literal) => {
        Template {
            name: $name,
            source: include_str!(concat!("../../templates/email/", $name, ".txt")),
        }
    };
}

pub const BALANCE_LOW: Template = template!("balance_low");
pub const BALANCE_DEPLETED: Template = template!("balance_depleted");
pub const ENDPOINT_DISABLED: Template = template!("endpoint_disabled");
pub const RECEIPT: Template = template!("receipt");
pub const USAGE_THRESHOLD: Template = template!("usage_threshold");

/// Every template (README "Scheduled jobs and notifications" lists them).
pub const TEMPLATES: [Template; 5] = [
    BALANCE_LOW,
    BALANCE_DEPLETED,
    ENDPOINT_DISABLED,
    RECEIPT,
    USAGE_THRESHOLD,
];

/// Why a template did not render: a defect in the template or its caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("template {0}: the first line must be `Subject: …` followed by a blank line")]
    Shape(&'static str),
    #[error("template {0}: placeholder {{{1}}} has no value")]
    Unknown(&'static str, String),
    #[error("template {0}: {{ without a closing }}")]
    Unclosed(&'static str),
    #[error("template {0}: value {1} is given but not used")]
    Unused(&'static str, String),
    #[error("template {0}: the subject needs {1}")]
    Missing(&'static str, String),
}

/// A rendered email: subject and plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

impl Template {
    /// Fills the placeholders with `values`. A placeholder with no entry
    /// in `values` is an error, and so is a value no placeholder uses (a
    /// caller and its template disagree). A value of `None` leaves out
    /// every body line that uses it (the receipt's unit price when there
    /// is none); the subject needs all of its values.
    pub fn render(&self, values: &[(&str, Option<String>)]) -> Result<Rendered, RenderError> {
        let rest = self
            .source
            .strip_prefix("Subject: ")
            .ok_or(RenderError::Shape(self.name))?;
        let (subject, body) = rest.split_once('\n').ok_or(RenderError::Shape(self.name))?;
        let body = body
            .strip_prefix('\n')
            .ok_or(RenderError::Shape(self.name))?;
        let mut used = vec![false; values.len()];
        let subject = match self.fill(subject, values, &mut used)? {
            Some(s) => s,
            None => {
                let missing = placeholders(subject)
                    .into_iter()
                    .find(|p| values.iter().any(|(k, v)| k == p && v.is_none()))
                    .unwrap_or_default();
                return Err(RenderError::Missing(self.name, missing));
            }
        };
        let mut out = String::with_capacity(body.len());
        for line in body.split_inclusive('\n') {
            if let Some(line) = self.fill(line, values, &mut used)? {
                out.push_str(&line);
            }
        }
        if let Some(i) = used.iter().position(|u| !u) {
            return Err(RenderError::Unused(self.name, values[i].0.to_owned()));
        }
        Ok(Rendered { subject, body: out })
    }

    /// One line filled, or `None` when a value it uses is `None`.
    fn fill(
        &self,
        line: &str,
        values: &[(&str, Option<String>)],
        used: &mut [bool],
    ) -> Result<Option<String>, RenderError> {
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        let mut keep = true;
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(after) = rest.strip_prefix('{') {
                out.push('{');
                rest = after;
                continue;
            }
            let end = rest.find('}').ok_or(RenderError::Unclosed(self.name))?;
            let name = &rest[..end];
            rest = &rest[end + 1..];
            let i = values
                .iter()
                .position(|(k, _)| *k == name)
                .ok_or_else(|| RenderError::Unknown(self.name, name.to_owned()))?;
            used[i] = true;
            match &values[i].1 {
                Some(v) => out.push_str(v),
                None => keep = false,
            }
        }
        out.push_str(rest);
        Ok(keep.then_some(out))
    }
}

/// The placeholders a text uses, in order.
fn placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            continue;
        }
        let Some(end) = rest.find('}') else { break };
        out.push(rest[..end].to_owned());
        rest = &rest[end + 1..];
    }
    out
}

/// Renders a template whose values the caller always has; a failure is a
/// defect (the unit tests render every template), logged, and no email.
fn render_or_log(
    template: &Template,
    values: &[(&str, Option<String>)],
) -> Option<(String, String)> {
    match template.render(values) {
        Ok(r) => Some((r.subject, r.body)),
        Err(e) => {
            tracing::error!(error = %e, "email template did not render");
            None
        }
    }
}

/// Money with its currency, in the currency's minor units (`38.10 EUR`).
pub fn money(amount: Decimal, currency: &str) -> String {
    let mut m = amount.normalize();
    m.rescale(crate::pricing::minor_units(currency).max(m.scale()));
    format!("{m} {currency}")
}

/// Subject and body of a low-balance or depleted email. A low crossing
/// always has a threshold (there is none to cross without one).
pub fn low_balance_message(
    kind: EventType,
    customer_name: &str,
    cs: &CreditSystem,
    available: Decimal,
    threshold: Option<Decimal>,
) -> Option<(String, String)> {
    match kind {
        EventType::WalletBalanceLow => render_or_log(
            &BALANCE_LOW,
            &[
                ("customer_name", Some(customer_name.to_owned())),
                ("credit_system", Some(cs.name.clone())),
                ("available", Some(amount_with_unit(available, cs))),
                ("threshold", Some(amount_with_unit(threshold?, cs))),
            ],
        ),
        EventType::WalletBalanceDepleted => render_or_log(
            &BALANCE_DEPLETED,
            &[
                ("customer_name", Some(customer_name.to_owned())),
                ("units", Some(cs.unit_plural.clone())),
                ("credit_system", Some(cs.name.clone())),
                ("available", Some(amount_with_unit(available, cs))),
            ],
        ),
        _ => None,
    }
}

/// What a purchase confirmation says (from the paid order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFacts {
    /// `ord_…`, as people see it.
    pub order_id: String,
    pub quantity: Decimal,
    /// Per credit, when the quote has one.
    pub unit_price: Option<Decimal>,
    pub subtotal: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    pub currency: String,
    pub gateway: Option<String>,
    pub payment_id: Option<String>,
    pub paid_at: DateTime<Utc>,
}

/// Subject and body of a purchase confirmation.
pub fn receipt_message(
    customer_name: &str,
    cs: &CreditSystem,
    r: &ReceiptFacts,
) -> Option<(String, String)> {
    let payment = r.gateway.is_some() && r.payment_id.is_some();
    render_or_log(
        &RECEIPT,
        &[
            ("customer_name", Some(customer_name.to_owned())),
            ("order_id", Some(r.order_id.clone())),
            ("credit_system", Some(cs.name.clone())),
            ("quantity", Some(amount_with_unit(r.quantity, cs))),
            (
                "unit_price",
                r.unit_price
                    .map(|p| format!("{} per {}", money(p, &r.currency), cs.unit_singular)),
            ),
            ("subtotal", Some(money(r.subtotal, &r.currency))),
            ("tax", Some(money(r.tax, &r.currency))),
            ("total", Some(money(r.total, &r.currency))),
            ("gateway", r.gateway.clone().filter(|_| payment)),
            ("payment_id", r.payment_id.clone().filter(|_| payment)),
            (
                "paid_at",
                Some(r.paid_at.format("%Y-%m-%d %H:%M UTC").to_string()),
            ),
        ],
    )
}

/// Subject and body of a usage-% alert ("You have used 90 % of your AI
/// tokens").
pub fn usage_threshold_message(
    customer_name: &str,
    cs: &CreditSystem,
    threshold: Decimal,
    usage_percent: Decimal,
    used: Decimal,
    granted: Decimal,
) -> Option<(String, String)> {
    render_or_log(
        &USAGE_THRESHOLD,
        &[
            ("customer_name", Some(customer_name.to_owned())),
            ("credit_system", Some(cs.name.clone())),
            ("threshold", Some(threshold.normalize().to_string())),
            ("usage_percent", Some(usage_percent.normalize().to_string())),
            ("used", Some(amount_with_unit(used, cs))),
            ("granted", Some(amount_with_unit(granted, cs))),
        ],
    )
}

pub(crate) fn new_email(
    tenant_id: Uuid,
    event_id: Option<Uuid>,
    kind: &str,
    to: &str,
    subject: String,
    body: String,
    now: DateTime<Utc>,
) -> email_delivery::ActiveModel {
    email_delivery::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant_id),
        event_id: Set(event_id),
        kind: Set(kind.to_owned()),
        to_address: Set(to.to_owned()),
        subject: Set(subject),
        body: Set(body),
        status: Set("PENDING".into()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_until: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        sent_at: Set(None),
    }
}

/// Subject and body of the email telling a tenant's admin that a webhook
/// endpoint was disabled.
pub fn endpoint_disabled_message(url: &str, failures: i32) -> Option<(String, String)> {
    render_or_log(
        &ENDPOINT_DISABLED,
        &[
            ("url", Some(url.to_owned())),
            ("failures", Some(failures.to_string())),
        ],
    )
}

/// Tells the tenant's admin that an endpoint was disabled.
pub(crate) async fn queue_endpoint_disabled(
    conn: &impl ConnectionTrait,
    endpoint: &webhook_endpoint::Model,
    to: &str,
    failures: i32,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let Some((subject, body)) = endpoint_disabled_message(&endpoint.url, failures) else {
        return Ok(());
    };
    new_email(
        endpoint.tenant_id,
        None,
        ENDPOINT_DISABLED.name,
        to,
        subject,
        body,
        now,
    )
    .insert(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendReport {
    pub sent: u64,
    pub failed: u64,
    pub retrying: u64,
}

/// Sends every email due now (at most `limit`), one attempt each.
pub async fn send_due(
    db: &Db,
    clock: &dyn Clock,
    mailer: &impl Mailer,
    limit: u64,
) -> Result<SendReport, Error> {
    let now = clock.now();
    let due = email_delivery::Entity::find()
        .filter(email_delivery::Column::Status.eq("PENDING"))
        .filter(email_delivery::Column::NextAttemptAt.lte(now))
        .order_by_asc(email_delivery::Column::NextAttemptAt)
        .limit(limit)
        .all(db.reader())
        .await?;
    let mut report = SendReport::default();
    for e in due {
        let txn = db.begin_write().await?;
        let claimed = email_delivery::Entity::update_many()
            .col_expr(email_delivery::Column::LeaseUntil, Expr::value(now + LEASE))
            .filter(email_delivery::Column::Id.eq(e.id))
            .filter(email_delivery::Column::Status.eq("PENDING"))
            .filter(
                sea_orm::Condition::any()
                    .add(email_delivery::Column::LeaseUntil.is_null())
                    .add(email_delivery::Column::LeaseUntil.lt(now)),
            )
            .exec(&txn)
            .await?;
        txn.commit().await?;
        if claimed.rows_affected == 0 {
            continue;
        }
        let result = mailer
            .send(&EmailMessage {
                to: e.to_address.clone(),
                subject: e.subject.clone(),
                body: e.body.clone(),
            })
            .await;
        let attempts = e.attempts + 1;
        let now = clock.now();
        let mut active = e.clone().into_active_model();
        active.attempts = Set(attempts);
        active.lease_until = Set(None);
        match result {
            Ok(()) => {
                active.status = Set("SENT".into());
                active.sent_at = Set(Some(now));
                report.sent += 1;
            }
            Err(err) => {
                active.last_error = Set(Some(err.message.chars().take(500).collect()));
                let next = if err.permanent {
                    None
                } else {
                    retry::next_delay(
                        &EMAIL_DELAYS,
                        u32::try_from(attempts).unwrap_or(u32::MAX),
                        None,
                        e.id.as_u128() as u64,
                    )
                };
                match next {
                    Some(delay) => {
                        active.next_attempt_at =
                            Set(now + Duration::from_std(delay).unwrap_or(Duration::hours(1)));
                        report.retrying += 1;
                    }
                    None => {
                        active.status = Set("FAILED".into());
                        report.failed += 1;
                    }
                }
            }
        }
        let txn = db.begin_write().await?;
        let email = active.update(&txn).await?;
        email_attempt::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(email.tenant_id),
            email_id: Set(email.id),
            number: Set(attempts),
            attempted_at: Set(now),
            sent: Set(email.status == "SENT"),
            error: Set(email.last_error.clone().filter(|_| email.status != "SENT")),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        crate::metrics::email_attempt(match email.status.as_str() {
            "SENT" => "sent",
            "FAILED" => "failed",
            _ => "retrying",
        });
    }
    Ok(report)
}

/// One attempt to send an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAttempt {
    pub number: i32,
    pub attempted_at: DateTime<Utc>,
    pub sent: bool,
    pub error: Option<String>,
}

/// The attempts of these emails, in order.
pub async fn attempts_of(
    db: &Db,
    tenant_id: Uuid,
    email_ids: &[EmailId],
) -> Result<Vec<(EmailId, EmailAttempt)>, Error> {
    Ok(email_attempt::Entity::find()
        .filter(email_attempt::Column::TenantId.eq(tenant_id))
        .filter(email_attempt::Column::EmailId.is_in(email_ids.iter().copied()))
        .order_by_asc(email_attempt::Column::Number)
        .all(db.reader())
        .await?
        .into_iter()
        .map(|a| {
            (
                EmailId::from_uuid(a.email_id),
                EmailAttempt {
                    number: a.number,
                    attempted_at: a.attempted_at,
                    sent: a.sent,
                    error: a.error,
                },
            )
        })
        .collect())
}

/// The tenant's emails, newest first, optionally of one status.
pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    status: Option<&str>,
    page: PageRequest,
) -> Result<Page<EmailDelivery>, Error> {
    let mut q =
        email_delivery::Entity::find().filter(email_delivery::Column::TenantId.eq(tenant_id));
    if let Some(s) = status {
        let s = crate::input::key("status", s)?;
        q = q.filter(email_delivery::Column::Status.eq(s));
    }
    if let Some(after) = page.after {
        q = q.filter(email_delivery::Column::Id.lt(after));
    }
    let rows = q
        .order_by_desc(email_delivery::Column::Id)
        .limit(page.fetch_limit())
        .all(db.reader())
        .await?;
    Ok(page.finish(rows.into_iter().map(Into::into).collect()))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::credit_systems::Kind;

    fn tokens() -> CreditSystem {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        CreditSystem {
            id: crate::ids::CreditSystemId::from_uuid(Uuid::nil()),
            tenant_id: Uuid::nil(),
            key: "tokens".into(),
            name: "AI tokens".into(),
            description: String::new(),
            unit_singular: "token".into(),
            unit_plural: "tokens".into(),
            precision: 2,
            kind: Kind::Units,
            currency: None,
            low_balance_threshold: None,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn messages_name_the_credit_system_and_amounts() {
        let (subject, body) = low_balance_message(
            EventType::WalletBalanceLow,
            "Acme",
            &tokens(),
            Decimal::new(125, 1),
            Some(Decimal::from(100)),
        )
        .unwrap();
        assert_eq!(subject, "Low balance: 12.5 tokens left in AI tokens");
        assert!(
            body.contains("below your alert level of 100 tokens"),
            "{body}"
        );
        let (subject, _) = low_balance_message(
            EventType::WalletBalanceDepleted,
            "Acme",
            &tokens(),
            Decimal::ZERO,
            None,
        )
        .unwrap();
        assert_eq!(subject, "Your tokens are used up");
        assert_eq!(amount_with_unit(Decimal::ONE, &tokens()), "1 token");
        assert!(
            low_balance_message(
                EventType::CreditsGranted,
                "A",
                &tokens(),
                Decimal::ONE,
                None
            )
            .is_none()
        );
    }

    /// The wording the messages had before they moved to template files.
    #[test]
    fn templated_messages_keep_their_wording() {
        let (subject, body) = low_balance_message(
            EventType::WalletBalanceLow,
            "Acme",
            &tokens(),
            Decimal::from(90),
            Some(Decimal::from(100)),
        )
        .unwrap();
        assert_eq!(subject, "Low balance: 90 tokens left in AI tokens");
        assert_eq!(
            body,
            "Hello Acme,\n\nyour AI tokens balance is down to 90 tokens, below your alert level of 100 tokens.\nTop up to keep using it without interruption.\n"
        );
        let (subject, body) = low_balance_message(
            EventType::WalletBalanceDepleted,
            "Acme",
            &tokens(),
            Decimal::ZERO,
            None,
        )
        .unwrap();
        assert_eq!(subject, "Your tokens are used up");
        assert_eq!(
            body,
            "Hello Acme,\n\nyou have no tokens left (AI tokens: 0 tokens).\nTop up to continue.\n"
        );
        let (subject, body) = endpoint_disabled_message("https://hooks.test/x", 5).unwrap();
        assert_eq!(subject, "Webhook endpoint disabled: https://hooks.test/x");
        assert_eq!(
            body,
            "The webhook endpoint https://hooks.test/x failed 5 deliveries in a row, each after its whole retry schedule, and has been disabled.\nFix it, then re-enable it with updateWebhookEndpoint(enabled: true); redeliverWebhook sends missed events again.\n"
        );
    }

    fn receipt() -> ReceiptFacts {
        ReceiptFacts {
            order_id: "ord_abc".into(),
            quantity: Decimal::from(10_000),
            unit_price: Some(Decimal::new(8, 1)),
            subtotal: Decimal::from(8_000),
            tax: Decimal::new(168_000, 2),
            total: Decimal::new(968_000, 2),
            currency: "ARS".into(),
            gateway: Some("mercadopago".into()),
            payment_id: Some("pay_42".into()),
            paid_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 30, 0).unwrap(),
        }
    }

    #[test]
    fn receipt_says_order_quantity_prices_and_payment() {
        let (subject, body) = receipt_message("Acme", &tokens(), &receipt()).unwrap();
        assert_eq!(
            subject,
            "Your receipt for 10000 tokens of AI tokens (ord_abc)"
        );
        for line in [
            "Order:        ord_abc\n",
            "Credits:      10000 tokens of AI tokens\n",
            "Unit price:   0.80 ARS per token\n",
            "Subtotal:     8000.00 ARS\n",
            "Tax:          1680.00 ARS\n",
            "Total:        9680.00 ARS\n",
            "Paid with:    mercadopago, payment pay_42\n",
            "Paid at:      2026-03-01 09:30 UTC\n",
        ] {
            assert!(body.contains(line), "{line:?} in {body}");
        }
        // No unit price, no payment reference: those lines are left out.
        let bare = ReceiptFacts {
            unit_price: None,
            payment_id: None,
            ..receipt()
        };
        let (_, body) = receipt_message("Acme", &tokens(), &bare).unwrap();
        assert!(!body.contains("Unit price"), "{body}");
        assert!(!body.contains("Paid with"), "{body}");
        assert!(body.contains("Total:        9680.00 ARS\n"), "{body}");
    }

    #[test]
    fn usage_threshold_message_names_percent_and_amounts() {
        let (subject, body) = usage_threshold_message(
            "Acme",
            &tokens(),
            Decimal::from(90),
            Decimal::new(925, 1),
            Decimal::from(925),
            Decimal::from(1000),
        )
        .unwrap();
        assert_eq!(subject, "You have used 90 % of your AI tokens");
        assert!(
            body.contains(
                "You have used 90 % of your AI tokens: 925 tokens of 1000 tokens (92.5 %)."
            ),
            "{body}"
        );
    }

    /// Every template file is well formed and every one of its
    /// placeholders is one its message function gives a value for (the
    /// functions above render each of them; an unknown placeholder fails
    /// there).
    #[test]
    fn every_template_renders() {
        for t in TEMPLATES {
            assert!(t.source.starts_with("Subject: "), "{}", t.name);
            let mut names = placeholders(t.source);
            names.sort();
            names.dedup();
            let values: Vec<(&str, Option<String>)> = names
                .iter()
                .map(|p| (p.as_str(), Some("x".to_owned())))
                .collect();
            let r = t.render(&values).unwrap();
            assert!(
                !r.subject.contains('{') && !r.body.contains('{'),
                "{}",
                t.name
            );
            assert!(r.body.ends_with('\n'), "{}", t.name);
        }
        assert!(
            low_balance_message(
                EventType::WalletBalanceLow,
                "A",
                &tokens(),
                Decimal::ONE,
                Some(Decimal::TEN)
            )
            .is_some()
        );
        assert!(endpoint_disabled_message("https://x.test", 1).is_some());
    }

    #[test]
    fn render_fills_placeholders_and_refuses_unknown_or_unused_values() {
        let t = Template {
            name: "t",
            source: "Subject: Hi {who}\n\nDear {who},\n{{literal} {amount}\noptional {extra}\nbye\n",
        };
        let v = |extra: Option<&str>| {
            vec![
                ("who", Some("Ann".to_owned())),
                ("amount", Some("5 {tokens}".to_owned())),
                ("extra", extra.map(str::to_owned)),
            ]
        };
        let r = t.render(&v(Some("E"))).unwrap();
        assert_eq!(r.subject, "Hi Ann");
        // A value is put in as it is: braces in it are not placeholders.
        assert_eq!(r.body, "Dear Ann,\n{literal} 5 {tokens}\noptional E\nbye\n");
        // A missing value leaves its line out.
        assert_eq!(
            t.render(&v(None)).unwrap().body,
            "Dear Ann,\n{literal} 5 {tokens}\nbye\n"
        );
        // A placeholder without a value, or a value without a placeholder.
        assert_eq!(
            t.render(&v(Some("E"))[..2]),
            Err(RenderError::Unknown("t", "extra".into()))
        );
        let mut more = v(Some("E"));
        more.push(("typo", Some("x".into())));
        assert_eq!(
            t.render(&more),
            Err(RenderError::Unused("t", "typo".into()))
        );
        // The subject needs all of its values.
        let mut no_who = v(Some("E"));
        no_who[0].1 = None;
        assert_eq!(
            t.render(&no_who),
            Err(RenderError::Missing("t", "who".into()))
        );
        for bad in [
            "Hi\n\nbody\n",
            "Subject: x\nbody\n",
            "Subject: x {oops\n\nb\n",
        ] {
            assert!(
                Template {
                    name: "b",
                    source: bad
                }
                .render(&[])
                .is_err(),
                "{bad}"
            );
        }
    }

    /// README "Scheduled jobs and notifications" shows every template as
    /// it is: a changed template changes the README too.
    #[test]
    fn the_readme_shows_every_template() {
        let readme = include_str!("../../../README.md");
        for t in TEMPLATES {
            assert!(
                readme.contains(&format!("`{}.txt`", t.name))
                    && readme.contains(&format!("```text\n{}```", t.source)),
                "README lacks template {}",
                t.name
            );
        }
    }
}
