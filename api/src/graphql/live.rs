//! Live balances over WebSocket (graphql-ws): `walletUpdated` pushes a
//! wallet's balance first as it is, then after every committed change.
//! Changes come from the process's [`WalletFeed`] (one ledger tail per
//! process, not a query per subscriber); each update reads only the
//! subscriber's own wallet.

use std::{collections::VecDeque, sync::Arc};

use async_graphql::{Context, ID, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream, stream::BoxStream};
use service::{
    Clock, Db,
    live::{WalletChange, WalletFeed},
};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::{
    context::app,
    customer_access,
    error::{ApiError, ApiResult},
    ids::{self, Kind},
    refs::{CreditSystemRefInput, CustomerRefInput},
    scalars::Credits,
};

/// A wallet's balance right after a change.
#[derive(SimpleObject)]
pub struct WalletUpdate {
    wallet_id: ID,
    customer_id: ID,
    credit_system_id: ID,
    /// What can be spent now.
    available: Credits,
    /// Reserved by active holds.
    pending: Credits,
    /// `available + pending`.
    total: Credits,
    /// Overage not yet repaid.
    debt: Credits,
    /// The instant the balance is as of.
    at: DateTime<Utc>,
}

#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// The customer's wallets (or the one in `creditSystem`): each one's
    /// balance at once, then again after every committed change to it
    /// (changes within ~200 ms may arrive as one update). Works with
    /// customer tokens; the stream ends when the token expires.
    async fn wallet_updated(
        &self,
        ctx: &Context<'_>,
        customer: CustomerRefInput,
        credit_system: Option<CreditSystemRefInput>,
    ) -> async_graphql::Result<BoxStream<'static, WalletUpdate>> {
        Ok(wallet_updates(ctx, customer, credit_system).await?)
    }
}

async fn wallet_updates(
    ctx: &Context<'_>,
    customer: CustomerRefInput,
    credit_system: Option<CreditSystemRefInput>,
) -> ApiResult<BoxStream<'static, WalletUpdate>> {
    let (p, app) = app(ctx)?;
    let tenant_id = p.tenant_id;
    let found = service::customers::get(&app.db, tenant_id, &customer.parse("customer")?).await?;
    customer_access::ensure_readable(ctx, found.id).await?;
    let credit_system_id = match credit_system {
        Some(r) => Some(
            service::credit_systems::get(&app.db, tenant_id, &r.parse("creditSystem")?)
                .await?
                .id
                .uuid(),
        ),
        None => None,
    };
    let feed = ctx.data_opt::<WalletFeed>().ok_or_else(|| {
        tracing::error!("schema built without a wallet feed");
        ApiError::new(service::Code::Internal, "internal error", None)
    })?;
    // Subscribe before reading the first balances, so no change falls
    // in between.
    let rx = feed.subscribe();
    let first: VecDeque<WalletChange> =
        service::ledger::read::wallets_of_customers(&app.db, tenant_id, &[found.id])
            .await
            .map_err(|e| ApiError::from(service::ledger::Error::from(e)))?
            .remove(&found.id)
            .unwrap_or_default()
            .into_iter()
            .filter(|w| credit_system_id.is_none_or(|id| id == w.credit_system_id))
            .map(|w| WalletChange {
                tenant_id,
                wallet_id: w.id.uuid(),
                customer_id: found.id.uuid(),
                credit_system_id: w.credit_system_id.uuid(),
            })
            .collect();
    let watch = Watch {
        db: app.db.clone(),
        clock: app.clock.clone(),
        tenant_id,
        customer_id: found.id.uuid(),
        credit_system_id,
    };
    let updates = stream::unfold(
        (rx, first, watch),
        |(mut rx, mut queue, watch)| async move {
            loop {
                let change = match queue.pop_front() {
                    Some(c) => c,
                    None => match rx.recv().await {
                        Ok(c) => c,
                        // Too slow: some announcements were dropped; the
                        // next one carries the latest balance anyway.
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    },
                };
                if !watch.wants(&change) {
                    continue;
                }
                let update = watch.read(&change).await?;
                return Some((update, (rx, queue, watch)));
            }
        },
    );
    // A customer token's stream ends with the token.
    let until = p.customer_scope().map(|s| {
        (s.expires_at - app.clock.now())
            .to_std()
            .unwrap_or_default()
    });
    Ok(match until {
        Some(d) => updates.take_until(tokio::time::sleep(d)).boxed(),
        None => updates.boxed(),
    })
}

struct Watch {
    db: Db,
    clock: Arc<dyn Clock>,
    tenant_id: Uuid,
    customer_id: Uuid,
    credit_system_id: Option<Uuid>,
}

impl Watch {
    fn wants(&self, c: &WalletChange) -> bool {
        c.tenant_id == self.tenant_id
            && c.customer_id == self.customer_id
            && self
                .credit_system_id
                .is_none_or(|id| id == c.credit_system_id)
    }

    /// The wallet's balance now; `None` ends the stream (the database
    /// failed; the client reconnects).
    async fn read(&self, c: &WalletChange) -> Option<WalletUpdate> {
        let now = self.clock.now();
        let wallet_id = service::ids::WalletId::from_uuid(c.wallet_id);
        let balance = match service::ledger::read::balances(
            &self.db,
            self.tenant_id,
            &[wallet_id],
            now,
        )
        .await
        {
            Ok(mut b) => b.remove(&wallet_id)?,
            Err(e) => {
                tracing::warn!(error = %e, "walletUpdated: reading a balance failed");
                return None;
            }
        };
        Some(WalletUpdate {
            wallet_id: ids::encode(Kind::Wallet, c.wallet_id),
            customer_id: ids::encode(Kind::Customer, c.customer_id),
            credit_system_id: ids::encode(Kind::CreditSystem, c.credit_system_id),
            available: Credits(balance.available),
            pending: Credits(balance.pending),
            total: Credits(balance.total),
            debt: Credits(balance.debt),
            at: now,
        })
    }
}
