//! Auto top-up: the rule.
//!
//! When the customer's plan sets `autoTopUp {below,
//! quantity}` for the wallet's credit system and the wallet's available
//! balance is below `below`, a `PENDING` automatic order for `quantity` is
//! created and `topup.requested` emitted — at most one open automatic
//! order per wallet (the wallet row is locked while checking). The
//! tenant's backend charges it and confirms it like any order.
//!
//! It is checked after consumption, off the hot path, by the wallet-check
//! queue ([`crate::notifications::wallet_checks`]), which retries it until
//! it is done.

use entity::top_up_order;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use crate::ids::{CreditSystemId, CustomerId, WalletId};
use crate::{
    Clock, Code, Db, DomainError,
    credit_systems::CreditSystemRef,
    customers::CustomerRef,
    ledger,
    outbox::{self, EventType},
    purchases::{self, Error},
};

/// What an auto top-up check decided.
#[derive(Debug)]
pub(crate) enum TopUp {
    /// A `PENDING` automatic order was created.
    Ordered,
    /// Nothing to do: no selling plan, no auto top-up on it, above the
    /// trigger, or an open automatic order already.
    Nothing,
    /// Below the trigger, but the plan won't price the quantity (its
    /// bounds refuse it, the customer or credit system is gone): why.
    Unpriced(String),
}

/// The auto top-up rule for one wallet (see the module docs). Errors are
/// the database's (worth a retry); a refusal to price is [`TopUp::Unpriced`].
pub(crate) async fn top_up(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    wallet_id: WalletId,
) -> Result<TopUp, Error> {
    let now = clock.now();
    let Some(wallet) = entity::wallet::Entity::find_by_id(wallet_id.uuid())
        .filter(entity::wallet::Column::TenantId.eq(tenant_id))
        .one(db.reader())
        .await?
    else {
        return Ok(TopUp::Nothing);
    };
    let Some(pc) = purchases::selling_plan_credit(
        db,
        tenant_id,
        CustomerId::from_uuid(wallet.customer_id),
        CreditSystemId::from_uuid(wallet.credit_system_id),
        now,
    )
    .await?
    else {
        return Ok(TopUp::Nothing);
    };
    let Some(auto) = pc.pricing.as_ref().and_then(|p| p.auto_top_up) else {
        return Ok(TopUp::Nothing);
    };
    let available = ledger::read::balances(db, tenant_id, &[wallet_id], now)
        .await?
        .remove(&wallet_id)
        .map(|b| b.available)
        .unwrap_or_default();
    if available >= auto.below {
        return Ok(TopUp::Nothing);
    }
    let priced = match purchases::price(
        db,
        now,
        tenant_id,
        &CustomerRef::Id(CustomerId::from_uuid(wallet.customer_id)),
        &CreditSystemRef::Id(CreditSystemId::from_uuid(wallet.credit_system_id)),
        auto.quantity,
    )
    .await
    {
        Ok(p) => p,
        Err(e) if e.code() == Code::Internal => return Err(e),
        Err(e) => return Ok(TopUp::Unpriced(e.to_string())),
    };
    let txn = db.begin_write().await?;
    entity::wallet::Entity::find_by_id(wallet_id.uuid())
        .lock_exclusive()
        .one(&txn)
        .await?;
    let open = top_up_order::Entity::find()
        .filter(top_up_order::Column::TenantId.eq(tenant_id))
        .filter(top_up_order::Column::CustomerId.eq(wallet.customer_id))
        .filter(top_up_order::Column::CreditSystemId.eq(wallet.credit_system_id))
        .filter(top_up_order::Column::Automatic.eq(true))
        .filter(top_up_order::Column::Status.eq("PENDING"))
        .filter(top_up_order::Column::ExpiresAt.gt(now))
        .one(&txn)
        .await?;
    if open.is_some() {
        return Ok(TopUp::Nothing);
    }
    let order = purchases::new_order(tenant_id, &priced, true, now)?
        .insert(&txn)
        .await?;
    outbox::write(
        &txn,
        vec![purchases::order_event(
            &order,
            EventType::TopupRequested,
            now,
        )],
    )
    .await?;
    txn.commit().await?;
    Ok(TopUp::Ordered)
}
