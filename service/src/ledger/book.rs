//! One locked wallet inside one write transaction: the only place that
//! appends entries and changes grants' remaining amounts, so the ledger
//! rules are kept in one spot.
//!
//! Opening a book locks the wallet row (PostgreSQL `FOR UPDATE`; SQLite
//! transactions are `IMMEDIATE` already), so writes to one wallet are
//! serialized and never lose an update. Grant changes, entries and splits
//! are collected in memory and written by [`Book::finish`] in a few
//! statements, keeping the lock short.

mod session;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use entity::{
    credit_grant, credit_hold, credit_system, entry_split, hold_split, idempotency_record,
    ledger_entry, wallet,
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend,
    DatabaseTransaction, DbErr, EntityTrait, FromQueryResult, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Statement, Value, Values, sea_query::OnConflict,
};
use uuid::Uuid;

use super::{
    Attribution, Category, EntryType, HoldStatus, WalletRef,
    burn::{self, Block},
    read::{PlanLimits, wallet_state},
};
use crate::{
    amount::from_micros,
    credit_systems::CreditSystemRef,
    customers::CustomerRef,
    db::{by_id, columns_as, insert_statements, statement},
    error::Invalid,
    ids::{CreditSystemId, CustomerId, EntryId, GrantId, InvoiceId, WalletId},
    outbox::{self, EventType},
};

pub(crate) use session::Session;

/// Where a wallet's available balance stands against its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LowBalance {
    Ok,
    Low,
    Depleted,
}

impl LowBalance {
    pub fn as_str(self) -> &'static str {
        match self {
            LowBalance::Ok => "OK",
            LowBalance::Low => "LOW",
            LowBalance::Depleted => "DEPLETED",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "OK" => Some(LowBalance::Ok),
            "LOW" => Some(LowBalance::Low),
            "DEPLETED" => Some(LowBalance::Depleted),
            _ => None,
        }
    }

    /// Pure: where `available` stands (`threshold` None: only depletion
    /// counts).
    pub fn of(available: i64, threshold: Option<i64>) -> Self {
        if available <= 0 {
            LowBalance::Depleted
        } else if threshold.is_some_and(|t| available < t) {
            LowBalance::Low
        } else {
            LowBalance::Ok
        }
    }

    /// The event a move from `self` to `to` tells, if any: each crossing
    /// once; back above the threshold re-arms.
    pub fn crossing(self, to: LowBalance) -> Option<EventType> {
        match (self, to) {
            (a, b) if a == b => None,
            (_, LowBalance::Depleted) => Some(EventType::WalletBalanceDepleted),
            (LowBalance::Ok, LowBalance::Low) => Some(EventType::WalletBalanceLow),
            (_, LowBalance::Ok) => Some(EventType::WalletBalanceRecovered),
            (LowBalance::Depleted, LowBalance::Low) => None,
            _ => None,
        }
    }
}

/// What an entry points at besides its wallet.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Links {
    pub grant_id: Option<Uuid>,
    pub hold_id: Option<Uuid>,
    pub refund_of_entry_id: Option<Uuid>,
}

/// A grant about to be created.
#[derive(Debug, Clone)]
pub(crate) struct NewGrant {
    pub category: Category,
    pub amount: i64,
    pub effective_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub priority: i32,
    pub cost_basis: Option<String>,
    pub reason: String,
    pub metadata: Option<serde_json::Value>,
    pub source_kind: Option<String>,
    pub source_id: Option<String>,
}

/// Why a debit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Insufficient { available: i64 },
    BelowFloor { available: i64, floor: i64 },
}

pub(crate) struct Book<'t> {
    pub txn: &'t DatabaseTransaction,
    pub wallet: wallet::Model,
    pub now: DateTime<Utc>,
    grants: BTreeMap<Uuid, credit_grant::Model>,
    dirty: BTreeSet<Uuid>,
    /// Grants created by this book: inserted by the flush, before the
    /// entries that name them.
    created: BTreeSet<Uuid>,
    entries: Vec<ledger_entry::Model>,
    splits: Vec<entry_split::Model>,
    /// The plans' low-credit limits, once looked up.
    plan_limits: Option<PlanLimits>,
    /// The credit system's own low-balance threshold, once known.
    credit_system_threshold: Option<Option<i64>>,
    /// Whether an active hold has passed its deadline, when read ahead
    /// (`None`: [`Book::settle`] looks).
    lapsed_holds: Option<bool>,
}

impl<'t> Book<'t> {
    /// Locks the wallet of (customer, credit system), creating it first if
    /// `create` and it does not exist. `None`: no such wallet.
    async fn open(
        txn: &'t DatabaseTransaction,
        tenant_id: Uuid,
        customer_id: CustomerId,
        credit_system_id: CreditSystemId,
        now: DateTime<Utc>,
        create: bool,
    ) -> Result<Option<Book<'t>>, DbErr> {
        let find = || {
            wallet::Entity::find()
                .filter(wallet::Column::TenantId.eq(tenant_id))
                .filter(wallet::Column::CustomerId.eq(customer_id))
                .filter(wallet::Column::CreditSystemId.eq(credit_system_id))
                .lock_exclusive()
        };
        let mut found = find().one(txn).await?;
        if found.is_none() && create {
            wallet::Entity::insert(wallet::ActiveModel {
                id: Set(Uuid::now_v7()),
                tenant_id: Set(tenant_id),
                customer_id: Set(customer_id.uuid()),
                credit_system_id: Set(credit_system_id.uuid()),
                balance_micros: Set(0),
                debt_micros: Set(0),
                last_seq: Set(0),
                allow_overage: Set(false),
                low_balance_threshold_micros: Set(None),
                low_balance_state: Set(LowBalance::Ok.as_str().to_owned()),
                usage_alert_percents: Set(None),
                usage_alert_level_micros: Set(0),
                usage_alert_granted_micros: Set(None),
                usage_alert_grants: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .on_conflict(
                OnConflict::columns([
                    wallet::Column::TenantId,
                    wallet::Column::CustomerId,
                    wallet::Column::CreditSystemId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
            found = find().one(txn).await?;
        }
        match found {
            Some(wallet) => Ok(Some(Self::load(txn, wallet, now).await?)),
            None => Ok(None),
        }
    }

    /// Locks a wallet by id.
    async fn open_by_id(
        txn: &'t DatabaseTransaction,
        tenant_id: Uuid,
        wallet_id: WalletId,
        now: DateTime<Utc>,
    ) -> Result<Option<Book<'t>>, DbErr> {
        let found = wallet::Entity::find_by_id(wallet_id.uuid())
            .filter(wallet::Column::TenantId.eq(tenant_id))
            .lock_exclusive()
            .one(txn)
            .await?;
        match found {
            Some(wallet) => Ok(Some(Self::load(txn, wallet, now).await?)),
            None => Ok(None),
        }
    }

    /// Locks the wallet a reference names, resolving its customer and
    /// credit system in the same statement, and returns it with its credit
    /// system. `None`: the customer, the credit system or the wallet does
    /// not exist (or a reference is malformed) — resolve them on their own
    /// for the error that says which.
    async fn lock_by_ref(
        txn: &DatabaseTransaction,
        tenant_id: Uuid,
        wallet: &WalletRef,
    ) -> Result<Option<(wallet::Model, credit_system::Model)>, DbErr> {
        let mut values: Vec<Value> = vec![tenant_id.into()];
        let customer = match &wallet.customer {
            CustomerRef::Id(id) => {
                values.push((*id).into());
                "c.id = ?"
            }
            CustomerRef::ExternalId(e) => match crate::input::key("customer", e) {
                Ok(e) => {
                    values.push(e.into());
                    "c.external_id = ?"
                }
                Err(_) => return Ok(None),
            },
        };
        let credit_system = match &wallet.credit_system {
            CreditSystemRef::Id(id) => {
                values.push((*id).into());
                "cs.id = ?"
            }
            CreditSystemRef::Key(k) => match crate::input::key("creditSystem", k) {
                Ok(k) => {
                    values.push(k.into());
                    "cs.\"key\" = ?"
                }
                Err(_) => return Ok(None),
            },
        };
        let backend = txn.get_database_backend();
        // SQLite: BEGIN IMMEDIATE took the write lock already.
        let lock = if backend == DatabaseBackend::Postgres {
            " FOR UPDATE OF w"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {w}, {cs} FROM wallet w \
             JOIN customer c ON c.tenant_id = w.tenant_id AND c.id = w.customer_id \
             JOIN credit_system cs ON cs.tenant_id = w.tenant_id AND cs.id = w.credit_system_id \
             WHERE w.tenant_id = ? AND {customer} AND {credit_system}{lock}",
            w = columns_as::<wallet::Entity>("w", "w_"),
            cs = columns_as::<credit_system::Entity>("cs", "cs_"),
        );
        let Some(row) = txn.query_one_raw(statement(backend, &sql, values)).await? else {
            return Ok(None);
        };
        Ok(Some((
            wallet::Model::from_query_result(&row, "w_")?,
            credit_system::Model::from_query_result(&row, "cs_")?,
        )))
    }

    /// A book for a wallet [`Book::lock_by_ref`] locked, its state read in
    /// one statement ([`wallet_state`]) and what time has done booked
    /// (holds past their deadline are read only when there are some).
    async fn of_locked_settled(
        txn: &'t DatabaseTransaction,
        wallet: wallet::Model,
        credit_system: &credit_system::Model,
        now: DateTime<Utc>,
    ) -> Result<Book<'t>, DbErr> {
        let state = wallet_state(txn, &wallet, now).await?;
        let mut book = Self::of_locked(txn, wallet, state.grants, now);
        book.knows_credit_system(credit_system);
        book.knows_plan_limits(state.limits);
        if state.lapsed_holds {
            book.settle().await?;
        } else {
            book.book_time();
        }
        Ok(book)
    }

    async fn load(
        txn: &'t DatabaseTransaction,
        wallet: wallet::Model,
        now: DateTime<Utc>,
    ) -> Result<Book<'t>, DbErr> {
        let grants = credit_grant::Entity::find()
            .filter(credit_grant::Column::TenantId.eq(wallet.tenant_id))
            .filter(credit_grant::Column::WalletId.eq(wallet.id))
            .filter(credit_grant::Column::RemainingMicros.gt(0))
            .all(txn)
            .await?;
        Ok(Self::of_locked(txn, wallet, grants, now))
    }

    /// A book for a wallet the caller has locked in `txn`, with the
    /// wallet's grants that hold credits (`remaining > 0`), which the caller
    /// loaded for many wallets at once.
    fn of_locked(
        txn: &'t DatabaseTransaction,
        wallet: wallet::Model,
        grants: Vec<credit_grant::Model>,
        now: DateTime<Utc>,
    ) -> Book<'t> {
        let mut book = Book {
            txn,
            wallet,
            now,
            grants: grants.into_iter().map(|g| (g.id, g)).collect(),
            dirty: BTreeSet::new(),
            created: BTreeSet::new(),
            entries: Vec::new(),
            splits: Vec::new(),
            plan_limits: None,
            credit_system_threshold: None,
            lapsed_holds: None,
        };
        book.book_scheduled();
        book
    }

    pub fn tenant_id(&self) -> Uuid {
        self.wallet.tenant_id
    }

    /// Makes sure these grants (of this wallet) are in memory, e.g. spent
    /// ones a hold or refund gives back to.
    pub async fn load_grants(&mut self, ids: &[GrantId]) -> Result<(), DbErr> {
        let missing: Vec<Uuid> = ids
            .iter()
            .map(|id| id.uuid())
            .filter(|id| !self.grants.contains_key(id))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let found = credit_grant::Entity::find()
            .filter(credit_grant::Column::TenantId.eq(self.tenant_id()))
            .filter(credit_grant::Column::WalletId.eq(self.wallet.id))
            .filter(credit_grant::Column::Id.is_in(missing))
            .all(self.txn)
            .await?;
        self.grants.extend(found.into_iter().map(|g| (g.id, g)));
        Ok(())
    }

    /// The splits appended so far for one entry (signed).
    pub fn splits_of(&self, entry_id: EntryId) -> Vec<(GrantId, i64)> {
        self.splits
            .iter()
            .filter(|s| entry_id == s.entry_id)
            .map(|s| (GrantId::from_uuid(s.grant_id), s.amount_micros))
            .collect()
    }

    pub fn grant(&self, id: GrantId) -> Option<&credit_grant::Model> {
        self.grants.get(&id.uuid())
    }

    /// The booked grants, as spending sees them (a scheduled grant is
    /// booked before anything reads the book: see [`Book::book_scheduled`]).
    pub fn blocks(&self) -> Vec<Block> {
        self.grants
            .values()
            .filter(|g| g.booked)
            .map(|g| Block {
                id: g.id,
                remaining: g.remaining_micros,
                effective_at: g.effective_at,
                expires_at: g.expires_at,
                priority: g.priority,
                created_at: g.created_at,
                voided: g.voided_at.is_some(),
            })
            .collect()
    }

    /// What can be spent now (live grants − debt); negative in debt.
    pub fn available(&self) -> i64 {
        burn::live_total(&self.blocks(), self.now) - self.wallet.debt_micros
    }

    fn change_remaining(&mut self, grant_id: Uuid, delta: i64) {
        if let Some(g) = self.grants.get_mut(&grant_id) {
            g.remaining_micros += delta;
            debug_assert!(
                g.remaining_micros >= 0 && g.remaining_micros <= g.amount_micros,
                "grant {grant_id} remaining out of range"
            );
            self.dirty.insert(grant_id);
        }
    }

    /// Appends an entry; `splits` (signed like the entry) are applied to
    /// the grants they name.
    pub fn append(
        &mut self,
        entry_type: EntryType,
        amount: i64,
        links: Links,
        attribution: &Attribution,
        idempotency_key: Option<&str>,
        splits: &[(Uuid, i64)],
    ) -> ledger_entry::Model {
        self.wallet.last_seq += 1;
        self.wallet.balance_micros += amount;
        let entry = ledger_entry::Model {
            id: Uuid::now_v7(),
            tenant_id: self.tenant_id(),
            wallet_id: self.wallet.id,
            seq: self.wallet.last_seq,
            entry_type: entry_type.as_str().to_owned(),
            amount_micros: amount,
            balance_after_micros: self.wallet.balance_micros,
            grant_id: links.grant_id,
            hold_id: links.hold_id,
            refund_of_entry_id: links.refund_of_entry_id,
            feature: attribution.feature.clone(),
            quantity_micros: attribution.quantity_micros(),
            event_ref: attribution.event_ref.clone(),
            user_ref: attribution.user_ref.clone(),
            dimensions: attribution.dimensions.clone(),
            description: attribution.description.clone(),
            idempotency_key: idempotency_key.map(str::to_owned),
            created_at: self.now,
        };
        for &(grant_id, part) in splits {
            self.change_remaining(grant_id, part);
            self.splits.push(entry_split::Model {
                id: Uuid::now_v7(),
                tenant_id: entry.tenant_id,
                entry_id: entry.id,
                grant_id,
                amount_micros: part,
            });
        }
        self.entries.push(entry.clone());
        entry
    }

    /// Creates a grant holding nothing yet: the entry that fills it (its
    /// split) comes with [`Book::append`]. Written by the flush, with what
    /// it holds then.
    pub fn insert_grant(&mut self, new: NewGrant) -> Uuid {
        let grant = credit_grant::Model {
            id: Uuid::now_v7(),
            tenant_id: self.tenant_id(),
            wallet_id: self.wallet.id,
            category: new.category.as_str().to_owned(),
            amount_micros: new.amount,
            remaining_micros: 0,
            debt_repaid_micros: 0,
            effective_at: new.effective_at,
            expires_at: new.expires_at,
            priority: new.priority,
            cost_basis: new.cost_basis,
            reason: new.reason,
            metadata: new.metadata,
            source_kind: new.source_kind,
            source_id: new.source_id,
            voided_at: None,
            expiry_notified_at: None,
            created_at: self.now,
            booked: true,
        };
        let id = grant.id;
        self.grants.insert(id, grant);
        self.created.insert(id);
        id
    }

    /// Creates a grant effective after `now`: it holds its amount, but its
    /// GRANT entry (and with it the balance and `balance_after`) waits
    /// until it becomes spendable ([`Book::book_scheduled`]), so the running
    /// sum never counts credits that can't be spent yet.
    pub fn schedule_grant(&mut self, new: NewGrant) -> Uuid {
        debug_assert!(new.effective_at > self.now);
        let amount = new.amount;
        let id = self.insert_grant(new);
        if let Some(g) = self.grants.get_mut(&id) {
            g.remaining_micros = amount;
            g.booked = false;
        }
        id
    }

    /// What scheduled grants will add to the balance when they are booked.
    pub fn scheduled_total(&self) -> i64 {
        self.grants
            .values()
            .filter(|g| !g.booked && g.voided_at.is_none())
            .map(|g| g.remaining_micros)
            .sum()
    }

    /// Books the GRANT entry of every scheduled grant that has become
    /// effective, in the order they did (like expiries, lazily: by the
    /// first write to the wallet after `effective_at`, or the sweep).
    /// Called when the book is opened, so nothing reads or spends before.
    fn book_scheduled(&mut self) {
        let mut due: Vec<(DateTime<Utc>, Uuid)> = self
            .grants
            .values()
            .filter(|g| !g.booked && g.voided_at.is_none() && g.effective_at <= self.now)
            .map(|g| (g.effective_at, g.id))
            .collect();
        due.sort();
        for (_, grant_id) in due {
            self.book_grant_entry(grant_id);
        }
    }

    /// Appends the GRANT entry of a scheduled grant: what it holds moves
    /// into the ledger (its split puts it back into the grant).
    fn book_grant_entry(&mut self, grant_id: Uuid) {
        let Some(g) = self.grants.get_mut(&grant_id) else {
            return;
        };
        let amount = g.remaining_micros;
        g.remaining_micros = 0;
        g.booked = true;
        self.dirty.insert(grant_id);
        let attribution = Attribution {
            description: Some(g.reason.clone()),
            ..Attribution::default()
        };
        self.append(
            EntryType::Grant,
            amount,
            Links {
                grant_id: Some(grant_id),
                ..Links::default()
            },
            &attribution,
            None,
            &[(grant_id, amount)],
        );
    }

    /// Refuses an amount that would take the wallet's balance past
    /// [`BALANCE_MAX_CREDITS`](crate::amount::BALANCE_MAX_CREDITS).
    pub fn check_room(&self, amount: i64) -> Result<(), Invalid> {
        let max = crate::amount::BALANCE_MAX_CREDITS * crate::amount::MICROS_PER_CREDIT;
        match self.wallet.balance_micros.checked_add(amount) {
            Some(b) if b <= max => Ok(()),
            _ => Err(Invalid::new(
                "amount",
                format!(
                    "would take the balance past {} credits, the most a wallet holds",
                    crate::amount::BALANCE_MAX_CREDITS
                ),
            )),
        }
    }

    /// Creates a grant and the `entry_type` entry (GRANT, ADJUSTMENT,
    /// TRANSFER_IN…) that fills it; a grant live now repays debt first.
    pub async fn add_grant(
        &mut self,
        new: NewGrant,
        entry_type: EntryType,
        idempotency_key: Option<&str>,
    ) -> Result<(Uuid, ledger_entry::Model), DbErr> {
        let amount = new.amount;
        let attribution = Attribution {
            description: Some(new.reason.clone()),
            ..Attribution::default()
        };
        let grant_id = self.insert_grant(new);
        let entry = self.append(
            entry_type,
            amount,
            Links {
                grant_id: Some(grant_id),
                ..Links::default()
            },
            &attribution,
            idempotency_key,
            &[(grant_id, amount)],
        );
        self.book_time();
        Ok((grant_id, entry))
    }

    /// Spends `amount` from live grants in spending order. Refused, with
    /// nothing changed, when it would take `available` below `floor` (a
    /// plan's BLOCK limit), or below zero without `allow_debt`; with it, the
    /// shortfall becomes debt.
    #[allow(clippy::too_many_arguments)]
    pub fn spend(
        &mut self,
        entry_type: EntryType,
        amount: i64,
        allow_debt: bool,
        floor: Option<i64>,
        links: Links,
        attribution: &Attribution,
        idempotency_key: Option<&str>,
    ) -> Result<ledger_entry::Model, Refusal> {
        let available = self.available();
        if let Some(floor) = floor
            && available - amount < floor
        {
            return Err(Refusal::BelowFloor { available, floor });
        }
        if amount > available && !allow_debt {
            return Err(Refusal::Insufficient {
                available: available.max(0),
            });
        }
        let draw = burn::draw(&self.blocks(), amount, self.now);
        let splits: Vec<(Uuid, i64)> = draw.splits.iter().map(|&(id, x)| (id, -x)).collect();
        self.wallet.debt_micros += draw.shortfall;
        Ok(self.append(
            entry_type,
            -amount,
            links,
            attribution,
            idempotency_key,
            &splits,
        ))
    }

    /// Books what time has done: releases holds past their deadline, then
    /// writes EXPIRY (or VOID) entries for credits left in dead grants, then
    /// repays debt from live grants.
    pub async fn settle(&mut self) -> Result<(), DbErr> {
        if self.lapsed_holds == Some(false) {
            self.book_time();
            return Ok(());
        }
        let expired_holds = credit_hold::Entity::find()
            .filter(credit_hold::Column::TenantId.eq(self.tenant_id()))
            .filter(credit_hold::Column::WalletId.eq(self.wallet.id))
            .filter(credit_hold::Column::Status.eq(HoldStatus::Active.as_str()))
            .filter(credit_hold::Column::ExpiresAt.lte(self.now))
            .order_by_asc(credit_hold::Column::ExpiresAt)
            .all(self.txn)
            .await?;
        for hold in expired_holds {
            self.return_hold(hold, None, None).await?;
        }
        self.book_time();
        Ok(())
    }

    /// EXPIRY / VOID entries for credits left in dead grants; then repays
    /// debt from live grants (no entry: the balance does not change).
    pub fn book_time(&mut self) {
        let mut dead: Vec<(Option<DateTime<Utc>>, Uuid, EntryType, i64)> = self
            .grants
            .values()
            .filter(|g| g.remaining_micros > 0)
            .filter_map(|g| {
                let kind = if g.voided_at.is_some() {
                    EntryType::Void
                } else if g.expires_at.is_some_and(|e| e <= self.now) {
                    EntryType::Expiry
                } else {
                    return None;
                };
                Some((g.expires_at, g.id, kind, g.remaining_micros))
            })
            .collect();
        dead.sort_by_key(|&(expires_at, id, _, _)| (expires_at, id));
        for (_, grant_id, kind, remaining) in dead {
            self.append(
                kind,
                -remaining,
                Links {
                    grant_id: Some(grant_id),
                    ..Links::default()
                },
                &Attribution::default(),
                None,
                &[(grant_id, -remaining)],
            );
        }
        if self.wallet.debt_micros > 0 {
            let draw = burn::draw(&self.blocks(), self.wallet.debt_micros, self.now);
            for (grant_id, x) in draw.splits {
                self.change_remaining(grant_id, -x);
                if let Some(g) = self.grants.get_mut(&grant_id) {
                    g.debt_repaid_micros += x;
                }
                self.wallet.debt_micros -= x;
            }
        }
    }

    /// Creates a hold reserving `amount` from live grants (never debt, never
    /// below `floor`).
    pub async fn reserve(
        &mut self,
        amount: i64,
        expires_at: DateTime<Utc>,
        floor: Option<i64>,
        attribution: &Attribution,
        idempotency_key: Option<&str>,
        invoice_id: Option<InvoiceId>,
    ) -> Result<Result<(credit_hold::Model, ledger_entry::Model), Refusal>, DbErr> {
        let available = self.available();
        if let Some(floor) = floor
            && available - amount < floor
        {
            return Ok(Err(Refusal::BelowFloor { available, floor }));
        }
        if amount > available {
            return Ok(Err(Refusal::Insufficient {
                available: available.max(0),
            }));
        }
        let draw = burn::draw(&self.blocks(), amount, self.now);
        let hold = credit_hold::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(self.tenant_id()),
            wallet_id: Set(self.wallet.id),
            amount_micros: Set(amount),
            captured_micros: Set(None),
            status: Set(HoldStatus::Active.as_str().to_owned()),
            expires_at: Set(expires_at),
            feature: Set(attribution.feature.clone()),
            event_ref: Set(attribution.event_ref.clone()),
            user_ref: Set(attribution.user_ref.clone()),
            dimensions: Set(attribution.dimensions.clone()),
            description: Set(attribution.description.clone()),
            created_at: Set(self.now),
            settled_at: Set(None),
            invoice_id: Set(invoice_id.map(InvoiceId::uuid)),
        }
        .insert(self.txn)
        .await?;
        let rows: Vec<hold_split::ActiveModel> = draw
            .splits
            .iter()
            .enumerate()
            .map(|(i, &(grant_id, x))| hold_split::ActiveModel {
                id: Set(Uuid::now_v7()),
                tenant_id: Set(hold.tenant_id),
                hold_id: Set(hold.id),
                grant_id: Set(grant_id),
                position: Set(i as i32),
                amount_micros: Set(x),
            })
            .collect();
        if !rows.is_empty() {
            hold_split::Entity::insert_many(rows)
                .exec_without_returning(self.txn)
                .await?;
        }
        let splits: Vec<(Uuid, i64)> = draw.splits.iter().map(|&(id, x)| (id, -x)).collect();
        let entry = self.append(
            EntryType::Hold,
            -amount,
            Links {
                hold_id: Some(hold.id),
                ..Links::default()
            },
            attribution,
            idempotency_key,
            &splits,
        );
        Ok(Ok((hold, entry)))
    }

    /// Returns a hold's credits to the grants they came from (RELEASE);
    /// with `capture`, then spends that much of them again (USAGE, or
    /// INVOICE for a hold that pays an invoice). Credits returned to dead
    /// grants expire (or are voided) at once.
    pub async fn return_hold(
        &mut self,
        hold: credit_hold::Model,
        capture: Option<i64>,
        idempotency_key: Option<&str>,
    ) -> Result<(credit_hold::Model, ledger_entry::Model), DbErr> {
        let parts: Vec<(Uuid, i64)> = hold_split::Entity::find()
            .filter(hold_split::Column::TenantId.eq(hold.tenant_id))
            .filter(hold_split::Column::HoldId.eq(hold.id))
            .order_by_asc(hold_split::Column::Position)
            .all(self.txn)
            .await?
            .into_iter()
            .map(|s| (s.grant_id, s.amount_micros))
            .collect();
        let ids: Vec<GrantId> = parts
            .iter()
            .map(|(id, _)| GrantId::from_uuid(*id))
            .collect();
        self.load_grants(&ids).await?;
        let attribution = Attribution {
            feature: hold.feature.clone(),
            quantity: None,
            event_ref: hold.event_ref.clone(),
            user_ref: hold.user_ref.clone(),
            dimensions: hold.dimensions.clone(),
            description: hold.description.clone(),
        };
        let links = Links {
            hold_id: Some(hold.id),
            ..Links::default()
        };
        let release_key = if capture.is_some() {
            None
        } else {
            idempotency_key
        };
        let mut entry = self.append(
            EntryType::Release,
            hold.amount_micros,
            links,
            &attribution,
            release_key,
            &parts,
        );
        let status = match capture {
            Some(captured) => {
                let taken: Vec<(Uuid, i64)> = burn::take_front(&parts, captured)
                    .into_iter()
                    .map(|(id, x)| (id, -x))
                    .collect();
                let kind = if hold.invoice_id.is_some() {
                    EntryType::Invoice
                } else {
                    EntryType::Usage
                };
                entry = self.append(
                    kind,
                    -captured,
                    links,
                    &attribution,
                    idempotency_key,
                    &taken,
                );
                HoldStatus::Captured
            }
            None => HoldStatus::Released,
        };
        let mut active = hold.into_active_model();
        active.status = Set(status.as_str().to_owned());
        active.captured_micros = Set(capture);
        active.settled_at = Set(Some(self.now));
        let hold = active.update(self.txn).await?;
        self.book_time();
        Ok((hold, entry))
    }

    /// Marks a grant voided and writes its VOID entry for what remains.
    pub fn void(
        &mut self,
        grant_id: GrantId,
        reason: &str,
        idempotency_key: Option<&str>,
    ) -> Option<ledger_entry::Model> {
        let grant_id = grant_id.uuid();
        let now = self.now;
        if !self.grants.get(&grant_id)?.booked {
            // Scheduled: its GRANT entry first, so the VOID entry takes back
            // what the ledger holds (the balance nets to no change).
            self.book_grant_entry(grant_id);
        }
        let remaining = {
            let g = self.grants.get_mut(&grant_id)?;
            g.voided_at = Some(now);
            g.remaining_micros
        };
        self.dirty.insert(grant_id);
        let attribution = Attribution {
            description: Some(reason.to_owned()),
            ..Attribution::default()
        };
        Some(self.append(
            EntryType::Void,
            -remaining,
            Links {
                grant_id: Some(grant_id),
                ..Links::default()
            },
            &attribution,
            idempotency_key,
            &[(grant_id, -remaining)],
        ))
    }

    /// The outbox events of the entries collected so far.
    fn entry_events(&self) -> Vec<entity::outbox_event::ActiveModel> {
        self.entries
            .iter()
            .filter_map(|e| {
                let kind = match (EntryType::parse(&e.entry_type)?, e.amount_micros > 0) {
                    (EntryType::Grant | EntryType::Refund | EntryType::TransferIn, _)
                    | (EntryType::Adjustment, true) => EventType::CreditsGranted,
                    (EntryType::Usage | EntryType::Invoice, _) | (EntryType::Adjustment, false) => {
                        EventType::CreditsConsumed
                    }
                    (EntryType::Expiry, _) => EventType::CreditsExpired,
                    (EntryType::Void, _) => EventType::GrantVoided,
                    _ => return None,
                };
                Some(outbox::event(
                    e.tenant_id,
                    kind,
                    Some(WalletId::from_uuid(e.wallet_id)),
                    serde_json::json!({
                        "walletId": e.wallet_id,
                        "customerId": self.wallet.customer_id,
                        "creditSystemId": self.wallet.credit_system_id,
                        "entryId": e.id,
                        "entryType": e.entry_type,
                        "amount": from_micros(e.amount_micros).to_string(),
                        "balanceAfter": from_micros(e.balance_after_micros).to_string(),
                        "grantId": e.grant_id,
                        "feature": e.feature,
                        "eventRef": e.event_ref,
                    }),
                    e.created_at,
                ))
            })
            .collect()
    }

    /// The threshold a low-balance crossing is measured against: the
    /// wallet's own, else the highest low-credit limit of the customer's
    /// active plans for this credit system, else the credit system's
    /// default (the tenant's).
    /// The plans' low-credit limits for this wallet (one query, then cached).
    pub async fn plan_limits(&mut self) -> Result<PlanLimits, DbErr> {
        if let Some(limits) = self.plan_limits {
            return Ok(limits);
        }
        let limits = super::read::plans_low_credit_limits(
            self.txn,
            self.wallet.tenant_id,
            self.wallet.customer_id,
            self.wallet.credit_system_id,
            self.now,
        )
        .await?;
        self.plan_limits = Some(limits);
        Ok(limits)
    }

    /// Tells the book the wallet's credit system, which the caller already
    /// loaded, so `finish` need not look it up again.
    pub fn knows_credit_system(&mut self, cs: &entity::credit_system::Model) {
        if cs.id == self.wallet.credit_system_id {
            self.credit_system_threshold = Some(cs.low_balance_threshold_micros);
        }
    }

    async fn low_balance_threshold(&mut self) -> Result<Option<i64>, DbErr> {
        if let Some(t) = self.wallet.low_balance_threshold_micros {
            return Ok(Some(t));
        }
        if let Some(t) = self.plan_limits().await?.any {
            return Ok(Some(t));
        }
        if let Some(t) = self.credit_system_threshold {
            return Ok(t);
        }
        Ok(
            entity::credit_system::Entity::find_by_id(self.wallet.credit_system_id)
                .one(self.txn)
                .await?
                .and_then(|cs| cs.low_balance_threshold_micros),
        )
    }

    /// The splits appended so far for one entry, as they will be stored.
    pub fn split_models_of(&self, entry_id: EntryId) -> Vec<entry_split::Model> {
        self.splits
            .iter()
            .filter(|s| entry_id == s.entry_id)
            .cloned()
            .collect()
    }

    /// Gathers everything collected, the outbox events it causes and the
    /// wallet's new cache into `flush`, which its [`Session`] writes — for
    /// many books in one transaction, in a few statements
    /// ([`Flush::write`]) instead of a few each.
    async fn finish_into(mut self, flush: &mut Flush) -> Result<wallet::Model, DbErr> {
        flush.events.extend(self.entry_events());
        if !self.entries.is_empty() {
            let threshold = self.low_balance_threshold().await?;
            let available = self.available();
            let before = crate::error::known(
                LowBalance::parse(&self.wallet.low_balance_state),
                "wallet",
                "low_balance_state",
                self.wallet.id,
                &self.wallet.low_balance_state,
            )?;
            let after = LowBalance::of(available, threshold);
            if let Some(kind) = before.crossing(after) {
                flush.events.push(outbox::event(
                    self.wallet.tenant_id,
                    kind,
                    Some(WalletId::from_uuid(self.wallet.id)),
                    serde_json::json!({
                        "walletId": self.wallet.id,
                        "customerId": self.wallet.customer_id,
                        "creditSystemId": self.wallet.credit_system_id,
                        "available": from_micros(available).to_string(),
                        "threshold": threshold.map(|t| from_micros(t).to_string()),
                    }),
                    self.now,
                ));
            }
            self.wallet.low_balance_state = after.as_str().to_owned();
        }
        for id in &self.created {
            flush.created.push(self.grants[id].clone());
        }
        for id in self.dirty.difference(&self.created) {
            flush.grants.push(self.grants[id].clone());
        }
        flush.wallet_ids.insert(self.wallet.id);
        flush
            .pairs
            .insert((self.wallet.customer_id, self.wallet.credit_system_id));
        flush.entries.append(&mut self.entries);
        flush.splits.append(&mut self.splits);
        self.wallet.updated_at = self.now;
        flush.wallets.push(self.wallet.clone());
        Ok(self.wallet)
    }

    /// Tells the book whether an active hold of its wallet has passed its
    /// deadline, which the caller read for many wallets at once.
    fn knows_lapsed_holds(&mut self, lapsed: bool) {
        self.lapsed_holds = Some(lapsed);
    }

    /// Tells the book the plans' low-credit limits, which the caller loaded
    /// for many wallets at once.
    pub fn knows_plan_limits(&mut self, limits: PlanLimits) {
        self.plan_limits = Some(limits);
    }
}

/// The writes of one or more [`Book`]s in one transaction: changed grants,
/// new entries and splits, outbox events and the wallets' new caches.
#[derive(Default)]
pub(crate) struct Flush {
    created: Vec<credit_grant::Model>,
    grants: Vec<credit_grant::Model>,
    entries: Vec<ledger_entry::Model>,
    splits: Vec<entry_split::Model>,
    events: Vec<entity::outbox_event::ActiveModel>,
    wallets: Vec<wallet::Model>,
    wallet_ids: HashSet<Uuid>,
    /// (customer, credit system) of each wallet here.
    pairs: HashSet<(Uuid, Uuid)>,
    keys: Vec<idempotency_record::Model>,
    /// The running mutation's audit row, when the caller said this is the
    /// transaction's last write ([`Session::finish_last`](super::Session::finish_last)).
    audit: Option<entity::audit_log::ActiveModel>,
}

/// Rows per multi-row UPDATE (`CASE` by id): bounded so a statement's
/// parameters stay well under SQLite's limit and its `CASE` stays short.
const UPDATE_CHUNK: usize = 200;

impl Flush {
    /// Whether a book of this wallet is gathered here and not yet written.
    fn touches(&self, wallet_id: Uuid) -> bool {
        self.wallet_ids.contains(&wallet_id)
    }

    /// [`Flush::touches`] by (customer, credit system).
    fn touches_pair(&self, customer_id: Uuid, credit_system_id: Uuid) -> bool {
        self.pairs.contains(&(customer_id, credit_system_id))
    }

    /// Whether this key waits here to be recorded.
    fn has_key(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k.key == key)
    }

    fn is_empty(&self) -> bool {
        self.created.is_empty()
            && self.grants.is_empty()
            && self.entries.is_empty()
            && self.splits.is_empty()
            && self.events.is_empty()
            && self.wallets.is_empty()
            && self.keys.is_empty()
            && self.audit.is_none()
    }

    /// An outbox event to write with the rest.
    fn event(&mut self, event: entity::outbox_event::ActiveModel) {
        self.events.push(event);
    }

    /// The mutation's audit row, to write with the rest.
    fn audit(&mut self, row: entity::audit_log::ActiveModel) {
        self.audit = Some(row);
    }

    /// An idempotency key to record with the writes (see [`Flush::write`]).
    fn record_key(&mut self, key: idempotency_record::Model) {
        self.keys.push(key);
    }

    /// Writes what is gathered and empties it; a key recorded meanwhile by
    /// another transaction is an `IDEMPOTENCY_CONFLICT` (the caller rolls
    /// back). Events written wake the outbox's listeners in other processes
    /// at commit if `notify` (PostgreSQL's NOTIFY), this process's always.
    async fn write(&mut self, txn: &DatabaseTransaction, notify: bool) -> Result<(), super::Error> {
        let mut rows = std::mem::take(self);
        let keys = std::mem::take(&mut rows.keys);
        let expected = keys.len() as u64;
        if rows.write_all(txn, keys, notify).await? != expected {
            return Err(super::Error::IdempotencyConflict);
        }
        Ok(())
    }

    /// Writes it all, and `keys` (a key already recorded is left as it is):
    /// one INSERT per [`INSERT_CHUNK`] new grants, entries, splits, events
    /// and keys, one UPDATE per [`UPDATE_CHUNK`] changed grants and
    /// wallets — sent to the database as one statement when their
    /// parameters fit ([`send`]). Returns how many keys were new.
    async fn write_all(
        self,
        txn: &DatabaseTransaction,
        keys: Vec<idempotency_record::Model>,
        notify: bool,
    ) -> Result<u64, DbErr> {
        let backend = txn.get_database_backend();
        let mut writes = insert_statements(
            backend,
            self.created
                .into_iter()
                .map(IntoActiveModel::into_active_model),
        );
        for chunk in self.grants.chunks(UPDATE_CHUNK) {
            let id = |g: &credit_grant::Model| credit_grant::Column::Id.eq(g.id);
            writes.push(
                credit_grant::Entity::update_many()
                    .col_expr(
                        credit_grant::Column::RemainingMicros,
                        by_id(chunk, id, |g| g.remaining_micros.into()),
                    )
                    .col_expr(
                        credit_grant::Column::DebtRepaidMicros,
                        by_id(chunk, id, |g| g.debt_repaid_micros.into()),
                    )
                    .col_expr(
                        credit_grant::Column::VoidedAt,
                        by_id(chunk, id, |g| g.voided_at.into()),
                    )
                    .col_expr(
                        credit_grant::Column::Booked,
                        by_id(chunk, id, |g| g.booked.into()),
                    )
                    .filter(credit_grant::Column::Id.is_in(chunk.iter().map(|g| g.id)))
                    .build(backend),
            );
        }
        // Counted as `credits_ledger_entries_total` when `txn` commits.
        crate::metrics::entries_written(txn, self.entries.iter().map(|e| e.entry_type.as_str()));
        writes.extend(insert_statements(
            backend,
            self.entries
                .into_iter()
                .map(IntoActiveModel::into_active_model),
        ));
        writes.extend(insert_statements(
            backend,
            self.splits
                .into_iter()
                .map(IntoActiveModel::into_active_model),
        ));
        let events = !self.events.is_empty();
        writes.extend(insert_statements(backend, self.events));
        writes.extend(insert_statements(backend, self.audit));
        for chunk in self.wallets.chunks(UPDATE_CHUNK) {
            let id = |w: &wallet::Model| wallet::Column::Id.eq(w.id);
            writes.push(
                wallet::Entity::update_many()
                    .col_expr(
                        wallet::Column::BalanceMicros,
                        by_id(chunk, id, |w| w.balance_micros.into()),
                    )
                    .col_expr(
                        wallet::Column::DebtMicros,
                        by_id(chunk, id, |w| w.debt_micros.into()),
                    )
                    .col_expr(
                        wallet::Column::LastSeq,
                        by_id(chunk, id, |w| w.last_seq.into()),
                    )
                    .col_expr(
                        wallet::Column::LowBalanceState,
                        by_id(chunk, id, |w| w.low_balance_state.clone().into()),
                    )
                    .col_expr(
                        wallet::Column::UpdatedAt,
                        by_id(chunk, id, |w| w.updated_at.into()),
                    )
                    .filter(wallet::Column::Id.is_in(chunk.iter().map(|w| w.id)))
                    .build(backend),
            );
        }
        let key_writes = crate::idempotency::record_statements(backend, keys);
        let inserted = send(txn, writes, key_writes, events && notify).await?;
        if events {
            outbox::written();
        }
        Ok(inserted)
    }
}

/// At most this many parameters in one combined write: all PostgreSQL
/// takes in one statement, since each round trip saved counts (an expiry
/// sweep chunk, ~40 parameters per expired grant, fits in one); more is
/// sent statement by statement.
const COMBINED_PARAMS_MAX: usize = 65_535;

/// Runs `writes`, then `keys` (INSERTs … ON CONFLICT DO NOTHING), and on
/// PostgreSQL wakes the outbox's listeners if `notify`; returns how many
/// rows `keys` inserted. One round trip when the parameters fit:
/// PostgreSQL runs them as data-modifying CTEs of one statement (each sees
/// the transaction's earlier writes, none its siblings', and foreign keys
/// are checked at the statement's end, so the order within does not
/// matter); SQLite as statements separated by `;` in one call, in order.
async fn send(
    txn: &DatabaseTransaction,
    writes: Vec<Statement>,
    keys: Vec<Statement>,
    notify: bool,
) -> Result<u64, DbErr> {
    let backend = txn.get_database_backend();
    let postgres = backend == DatabaseBackend::Postgres;
    let notify = notify && postgres;
    if writes.is_empty() && keys.is_empty() && !notify {
        return Ok(0);
    }
    let params: usize = writes
        .iter()
        .chain(&keys)
        .map(|s| s.values.as_ref().map_or(0, |v| v.0.len()))
        .sum();
    if params > COMBINED_PARAMS_MAX {
        for write in writes {
            txn.execute_raw(write).await?;
        }
        let mut inserted = 0;
        for key in keys {
            inserted += txn.execute_raw(key).await?.rows_affected();
        }
        if notify {
            txn.execute_unprepared(&format!("NOTIFY {}", outbox::CHANNEL))
                .await?;
        }
        return Ok(inserted);
    }
    // Statements from `first_key` on are the keys'.
    let first_key = writes.len();
    let mut values = Vec::with_capacity(params);
    let mut parts = Vec::with_capacity(writes.len() + keys.len());
    for (i, s) in writes.into_iter().chain(keys).enumerate() {
        let sql = if postgres {
            shift_params(&s.sql, values.len())
        } else {
            s.sql
        };
        values.extend(s.values.map(|v| v.0).unwrap_or_default());
        parts.push((i, sql));
    }
    let sql = if postgres {
        let mut ctes = Vec::new();
        let mut counts = Vec::new();
        for (i, sql) in &parts {
            if *i >= first_key {
                ctes.push(format!("k{i} AS ({sql} RETURNING 1)"));
                counts.push(format!("(SELECT COUNT(*) FROM k{i})"));
            } else {
                ctes.push(format!("w{i} AS ({sql})"));
            }
        }
        if counts.is_empty() {
            counts.push("CAST(0 AS BIGINT)".into());
        }
        let notified = if notify {
            format!(
                ", (SELECT COUNT(*) FROM (SELECT pg_notify('{}', '')) n) AS notified",
                outbox::CHANNEL
            )
        } else {
            String::new()
        };
        format!(
            "WITH {} SELECT {} AS keys{notified}",
            ctes.join(", "),
            counts.join(" + ")
        )
    } else {
        parts
            .iter()
            .map(|(i, sql)| {
                if *i >= first_key {
                    format!("{sql} RETURNING 1")
                } else {
                    sql.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, Values(values)))
        .await?;
    Ok(if postgres {
        match rows.first() {
            Some(row) => row.try_get::<i64>("", "keys")? as u64,
            None => 0,
        }
    } else {
        // One row per key inserted.
        rows.len() as u64
    })
}

/// `$n` placeholders of a PostgreSQL statement become `$(n + offset)`,
/// for a statement joined into another after `offset` parameters (the
/// statements here are built by sea-query: every value is a parameter, so
/// a `$` is always a placeholder).
fn shift_params(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut n = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            n.push(d);
            chars.next();
        }
        match n.parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&n),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_crossing_is_told_once_and_rearms_above_the_threshold() {
        use LowBalance::*;
        let t = Some(100);
        assert_eq!(LowBalance::of(150, t), Ok);
        assert_eq!(LowBalance::of(99, t), Low);
        assert_eq!(LowBalance::of(100, t), Ok);
        assert_eq!(LowBalance::of(0, t), Depleted);
        assert_eq!(LowBalance::of(-5, None), Depleted);
        assert_eq!(LowBalance::of(5, None), Ok);
        let cases = [
            (Ok, Low, Some(EventType::WalletBalanceLow)),
            (Low, Low, None),
            (Low, Depleted, Some(EventType::WalletBalanceDepleted)),
            (Ok, Depleted, Some(EventType::WalletBalanceDepleted)),
            (Depleted, Low, None),
            (Depleted, Ok, Some(EventType::WalletBalanceRecovered)),
            (Low, Ok, Some(EventType::WalletBalanceRecovered)),
            (Ok, Ok, None),
        ];
        for (from, to, told) in cases {
            assert_eq!(from.crossing(to), told, "{from:?} → {to:?}");
        }
    }
}
