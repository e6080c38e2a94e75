//! Allocation down a customer tree: a partner moves credits to a client, a
//! client to its events. One way only — to a descendant, never to an
//! ancestor, a sibling's subtree or another tenant — and a transfer never
//! extends a credit's life: each block drawn from the source becomes a
//! `TRANSFER` grant on the target with the same expiry, priority and cost
//! basis. Allocated credits can't be pulled back; an ADMIN's
//! `adjustBalance` on both wallets is the escape hatch.

use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::{
    Clock, Db,
    amount::positive_micros,
    credit_systems::{self, CreditSystemRef},
    customers::{self, CustomerRef},
    error::Invalid,
    idempotency::{self, IdempotencyKey, Request},
    ids::{CreditSystemId, CustomerId, EntryId, GrantId},
    ledger::{
        Attribution, Category, Entry, EntryType, Error, Grant,
        book::{Links, NewGrant, Session},
    },
};

#[derive(Debug, Clone, Serialize)]
pub struct AllocateInput {
    pub from: CustomerRef,
    pub to: CustomerRef,
    pub credit_system: CreditSystemRef,
    pub amount: Decimal,
    pub note: Option<String>,
    pub idempotency_key: String,
}

#[derive(Debug, Clone)]
pub struct AllocateOutcome {
    /// The source's TRANSFER_OUT entry.
    pub out: Entry,
    /// The target's TRANSFER_IN entry.
    pub r#in: Entry,
    /// The target's new grants, one per block drawn.
    pub grants: Vec<Grant>,
}

/// Moves credits from a customer to one of its descendants.
pub async fn allocate(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    input: &AllocateInput,
) -> Result<AllocateOutcome, Error> {
    let key = IdempotencyKey::parse(&input.idempotency_key)?;
    let note = input
        .note
        .as_deref()
        .map(|n| crate::input::text("note", n, crate::input::TEXT_LEN_MAX))
        .transpose()?;
    let now = clock.now();
    let txn = db.begin_write().await?;
    let from = customers::resolve(&txn, tenant_id, &input.from).await?;
    let to = customers::resolve(&txn, tenant_id, &input.to)
        .await
        .map_err(|e| match e {
            customers::Error::NotFound(missing) => {
                Error::Invalid(Invalid::new("to", format!("no customer {}", missing.id)))
            }
            customers::Error::NoExternalId(e) => Error::Invalid(Invalid::new(
                "to",
                format!("no customer with external id {e:?}"),
            )),
            e => e.into(),
        })?;
    let cs = credit_systems::resolve(&txn, tenant_id, &input.credit_system).await?;
    let amount = positive_micros(input.amount, cs.precision.clamp(0, 6) as u32, "amount")?;
    let request = Request::new(key, "allocate", &(from.id, to.id, cs.id, amount, &note));
    let ancestors = customers::ancestors(&txn, tenant_id, CustomerId::from_uuid(to.id)).await?;
    let down = to.id != from.id && ancestors.contains(&from.id);
    // Wallets are locked only for a move down the tree as it is now,
    // source before target: every writer locks ancestors' wallets before
    // descendants', so no two allocations wait on each other in a cycle.
    // A move the tree refuses now may still be a replay of one it allowed.
    // Both books are written together, with the key, in one write.
    let mut session = Session::gathering(&txn);
    let books = if down {
        let source = session
            .open(
                tenant_id,
                CustomerId::from_uuid(from.id),
                CreditSystemId::from_uuid(cs.id),
                now,
                false,
            )
            .await?;
        let target = session
            .open(
                tenant_id,
                CustomerId::from_uuid(to.id),
                CreditSystemId::from_uuid(cs.id),
                now,
                true,
            )
            .await?
            .ok_or(Error::Missing("wallet", "to"))?;
        Some((source, target))
    } else {
        None
    };
    let out = idempotency::replay_or::<_, Error>(
        &txn,
        tenant_id,
        &request,
        async |entry_id| replay(&txn, tenant_id, entry_id).await,
        async || {
            let Some((source, mut target)) = books else {
                return Err(Invalid::new(
                    "to",
                    "credits move only down the tree, to a descendant of `from`",
                )
                .into());
            };
            let Some(mut source) = source else {
                return Err(Error::InsufficientCredits {
                    requested: crate::amount::from_micros(amount),
                    available: Decimal::ZERO,
                });
            };
            source.settle().await?;
            target.settle().await?;
            let attribution = Attribution {
                description: note,
                ..Attribution::default()
            };
            target.check_room(amount)?;
            let out = source
                .spend(
                    EntryType::TransferOut,
                    amount,
                    false,
                    None,
                    Links::default(),
                    &attribution,
                    Some(request.key().as_str()),
                )
                .map_err(|r| super::ops::refused(amount, r))?;
            let mut splits = Vec::new();
            for (grant_id, part) in source.splits_of(EntryId::from_uuid(out.id)) {
                let Some(origin) = source.grant(grant_id).cloned() else {
                    continue;
                };
                let new_id = target.insert_grant(NewGrant {
                    category: Category::Transfer,
                    amount: -part,
                    effective_at: now,
                    expires_at: origin.expires_at,
                    priority: origin.priority,
                    cost_basis: origin.cost_basis.clone(),
                    reason: input
                        .note
                        .clone()
                        .unwrap_or_else(|| "allocation".to_owned()),
                    metadata: None,
                    source_kind: Some("transfer".into()),
                    source_id: Some(origin.id.to_string()),
                });
                splits.push((new_id, -part));
            }
            let r#in = target.append(
                EntryType::TransferIn,
                amount,
                Links {
                    refund_of_entry_id: Some(out.id),
                    ..Links::default()
                },
                &attribution,
                None,
                &splits,
            );
            target.book_time();
            let grants: Vec<Grant> = splits
                .iter()
                .filter_map(|(id, _)| {
                    target
                        .grant(GrantId::from_uuid(*id))
                        .cloned()
                        .map(Grant::try_from)
                })
                .collect::<Result<_, _>>()?;
            session.record_key(request.record_model(tenant_id, out.id, now));
            session.finish(source).await?;
            session.finish(target).await?;
            session.close().await?;
            Ok(AllocateOutcome {
                out: out.try_into()?,
                r#in: r#in.try_into()?,
                grants,
            })
        },
    )
    .await?;
    txn.commit().await?;
    Ok(out)
}

async fn replay(
    conn: &impl sea_orm::ConnectionTrait,
    tenant_id: Uuid,
    out_id: Uuid,
) -> Result<AllocateOutcome, Error> {
    use entity::{credit_grant, entry_split, ledger_entry};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let out = ledger_entry::Entity::find_by_id(out_id)
        .filter(ledger_entry::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await?
        .ok_or(Error::Missing("entry", "idempotencyKey"))?;
    let r#in = ledger_entry::Entity::find()
        .filter(ledger_entry::Column::TenantId.eq(tenant_id))
        .filter(ledger_entry::Column::RefundOfEntryId.eq(out_id))
        .filter(ledger_entry::Column::EntryType.eq(EntryType::TransferIn.as_str()))
        .one(conn)
        .await?
        .ok_or(Error::Missing("entry", "idempotencyKey"))?;
    let grant_ids: Vec<Uuid> = entry_split::Entity::find()
        .filter(entry_split::Column::TenantId.eq(tenant_id))
        .filter(entry_split::Column::EntryId.eq(r#in.id))
        .all(conn)
        .await?
        .into_iter()
        .map(|s| s.grant_id)
        .collect();
    // Ids grow in the order the grants were made: the original's order.
    let grants = credit_grant::Entity::find()
        .filter(credit_grant::Column::TenantId.eq(tenant_id))
        .filter(credit_grant::Column::Id.is_in(grant_ids))
        .order_by_asc(credit_grant::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(Grant::try_from)
        .collect::<Result<_, _>>()?;
    Ok(AllocateOutcome {
        out: out.try_into()?,
        r#in: r#in.try_into()?,
        grants,
    })
}
