//! A wallet's existence and options (overage, low-balance threshold,
//! usage alerts).

use super::*;

/// Makes sure the wallet of (customer, credit system) exists, inside the
/// caller's write transaction.
pub(crate) async fn ensure_wallet_in(
    txn: &DatabaseTransaction,
    tenant_id: Uuid,
    customer_id: CustomerId,
    credit_system_id: CreditSystemId,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    Session::new(txn)
        .open(tenant_id, customer_id, credit_system_id, now, true)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct WalletOptions {
    pub allow_overage: Option<bool>,
    /// `Some(None)` clears the threshold.
    pub low_balance_threshold: Option<Option<Decimal>>,
    /// The wallet's own usage-% alert thresholds (`Some(Some([]))`: off);
    /// `Some(None)` clears them (the plan's or the default apply).
    pub usage_alert_percents: Option<Option<Vec<Decimal>>>,
}

/// Sets a wallet's options, creating the wallet if it does not exist yet.
/// Setting the same options again changes nothing (naturally idempotent).
pub async fn configure_wallet(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    wallet: &WalletRef,
    options: &WalletOptions,
) -> Result<Wallet, Error> {
    let now = clock.now();
    let txn = db.begin_write().await?;
    let mut session = Session::new(&txn);
    let (customer_id, cs) = resolve(&txn, tenant_id, wallet).await?;
    let threshold = match &options.low_balance_threshold {
        Some(Some(t)) => {
            let micros = to_micros(*t, precision(&cs), "lowBalanceThreshold")?;
            if micros < 0 {
                return Err(Invalid::new("lowBalanceThreshold", "must not be negative").into());
            }
            Some(Some(micros))
        }
        Some(None) => Some(None),
        None => None,
    };
    let usage_alerts = match &options.usage_alert_percents {
        Some(Some(p)) => Some(Some(crate::alert_percents::to_json(
            &crate::alert_percents::validate_percents("usageAlertPercents", p)?,
        ))),
        Some(None) => Some(None),
        None => None,
    };
    let book = session
        .open(
            tenant_id,
            customer_id,
            CreditSystemId::from_uuid(cs.id),
            now,
            true,
        )
        .await?
        .ok_or(Error::Missing("wallet", "customer"))?;
    let mut active = book.wallet.into_active_model();
    if let Some(allow) = options.allow_overage {
        active.allow_overage = Set(allow);
    }
    if let Some(t) = threshold {
        active.low_balance_threshold_micros = Set(t);
    }
    if let Some(p) = usage_alerts {
        active.usage_alert_percents = Set(p);
    }
    active.updated_at = Set(now);
    let updated = active.update(&txn).await?;
    txn.commit().await?;
    Ok(updated.into())
}
