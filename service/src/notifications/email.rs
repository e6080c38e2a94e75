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
    EmailMessage, Mailer,
    retry::{self, EMAIL_DELAYS},
    webhooks::Error,
};
use crate::{
    Clock, Db,
    credit_systems::CreditSystem,
    outbox::EventType,
    pagination::{Page, PageRequest},
};

const LEASE: Duration = Duration::minutes(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailDelivery {
    pub id: Uuid,
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
            id: m.id,
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

/// Subject and body of a low-balance or depleted email.
pub fn low_balance_message(
    kind: EventType,
    customer_name: &str,
    cs: &CreditSystem,
    available: Decimal,
    threshold: Option<Decimal>,
) -> Option<(String, String)> {
    match kind {
        EventType::WalletBalanceLow => Some((
            format!(
                "Low balance: {} left in {}",
                amount_with_unit(available, cs),
                cs.name
            ),
            format!(
                "Hello {customer_name},\n\nyour {} balance is down to {}{}.\nTop up to keep using it without interruption.\n",
                cs.name,
                amount_with_unit(available, cs),
                threshold
                    .map(|t| format!(", below your alert level of {}", amount_with_unit(t, cs)))
                    .unwrap_or_default(),
            ),
        )),
        EventType::WalletBalanceDepleted => Some((
            format!("Your {} are used up", cs.unit_plural),
            format!(
                "Hello {customer_name},\n\nyou have no {} left ({}: {}).\nTop up to continue.\n",
                cs.unit_plural,
                cs.name,
                amount_with_unit(available, cs),
            ),
        )),
        _ => None,
    }
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

/// Tells the tenant's admin that an endpoint was disabled.
pub(crate) async fn queue_endpoint_disabled(
    conn: &impl ConnectionTrait,
    endpoint: &webhook_endpoint::Model,
    to: &str,
    failures: i32,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    new_email(
        endpoint.tenant_id,
        None,
        "endpoint_disabled",
        to,
        format!("Webhook endpoint disabled: {}", endpoint.url),
        format!(
            "The webhook endpoint {} failed {failures} deliveries in a row, each after its whole retry schedule, and has been disabled.\nFix it, then re-enable it with updateWebhookEndpoint(enabled: true); redeliverWebhook sends missed events again.\n",
            endpoint.url
        ),
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
    email_ids: &[Uuid],
) -> Result<Vec<(Uuid, EmailAttempt)>, Error> {
    Ok(email_attempt::Entity::find()
        .filter(email_attempt::Column::TenantId.eq(tenant_id))
        .filter(email_attempt::Column::EmailId.is_in(email_ids.iter().copied()))
        .order_by_asc(email_attempt::Column::Number)
        .all(db.reader())
        .await?
        .into_iter()
        .map(|a| {
            (
                a.email_id,
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
            id: Uuid::nil(),
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
}
