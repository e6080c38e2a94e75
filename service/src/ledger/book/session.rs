//! The ledger's write session: the one way to read or write ledger state
//! inside a write transaction.
//!
//! A [`Session`] wraps the transaction. Callers say *what* — open a wallet's
//! [`Book`] (grant, spend, expire, hold, void… on it), finish it, record an
//! idempotency key, add an outbox event — and the session decides *how*:
//!
//! - [`Session::new`] writes each finished book at once, with the keys and
//!   events recorded before it, in one combined statement where the
//!   database allows ([`Flush`]): the API's one-wallet operations.
//! - [`Session::gathering`] keeps finished books' writes pending and writes
//!   them together — a constant number of statements for many wallets: the
//!   allowance reset and the expiry sweep.
//!
//! Pending rows are never read stale: opening a wallet whose writes are
//! pending writes them first, and every other read of ledger tables goes
//! through [`Session::read`], which writes whatever is pending before it
//! hands out the transaction. The rule the callers used to remember ("write
//! the gathered rows before you read") lives here, once.
//!
//! [`Session::outside_ledger`] hands out the transaction without writing
//! for the tables the ledger never writes (subscriptions, allowance
//! periods, orders, the catalog): reading them can't see a pending row.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{credit_grant, credit_hold, credit_system, idempotency_record, outbox_event, wallet};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::LockType,
};
use uuid::Uuid;

use super::{Book, Flush, PlanLimits};
use crate::{
    idempotency::{Request, Seen},
    ids::{CreditSystemId, CustomerId, WalletId},
    ledger::{Error, HoldStatus, WalletRef},
};

/// Rows [`Session::preload`] and [`Session::preload_keys`] ask for per
/// statement (well under SQLite's parameter limit).
const PRELOAD_CHUNK: usize = 500;

/// When a session writes what its books did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// At each [`Session::finish`].
    EachBook,
    /// When a read needs it, and at [`Session::close`].
    Gathered,
}

/// See the [module documentation](self).
pub(crate) struct Session<'t> {
    txn: &'t DatabaseTransaction,
    mode: Mode,
    pending: Flush,
    /// Credit systems and plan limits the caller loaded for many wallets at
    /// once (a batch job), given to each book opened for them.
    credit_systems: HashMap<Uuid, credit_system::Model>,
    plan_limits: HashMap<(Uuid, Uuid), PlanLimits>,
    /// Wallets [`Session::preload`] locked and read, by (customer, credit
    /// system), each handed out once by [`Session::open`].
    preloaded: HashMap<(Uuid, Uuid), Preloaded>,
    /// Keys [`Session::preload_keys`] found unused, by (tenant, key).
    unused_keys: HashSet<(Uuid, String)>,
    /// Whether [`Session::plan_each_statement`] ran.
    custom_plans: bool,
    /// Whether writing events notifies other processes at commit (see
    /// [`Session::notify_after_run`]).
    notify: bool,
}

/// A wallet read ahead: the row (locked), its grants that hold credits, and
/// whether an active hold of it has passed its deadline.
struct Preloaded {
    wallet: wallet::Model,
    grants: Vec<credit_grant::Model>,
    lapsed_holds: bool,
}

impl<'t> Session<'t> {
    /// A session that writes each book when it is finished.
    pub fn new(txn: &'t DatabaseTransaction) -> Self {
        Self::with_mode(txn, Mode::EachBook)
    }

    /// A session that gathers the books' writes and writes them together:
    /// before a read that could see them, and at [`Session::close`].
    pub fn gathering(txn: &'t DatabaseTransaction) -> Self {
        Self::with_mode(txn, Mode::Gathered)
    }

    fn with_mode(txn: &'t DatabaseTransaction, mode: Mode) -> Self {
        Session {
            txn,
            mode,
            pending: Flush::default(),
            credit_systems: HashMap::new(),
            plan_limits: HashMap::new(),
            preloaded: HashMap::new(),
            unused_keys: HashSet::new(),
            custom_plans: false,
            notify: true,
        }
    }

    /// For a batch job's chunk: the events it writes don't NOTIFY the
    /// outbox's listeners in other processes at commit; the job does, once,
    /// when its run ends ([`crate::outbox::notify`]; this process's
    /// dispatcher is told at once either way, and every dispatcher also
    /// polls). PostgreSQL serializes every commit that notified, each
    /// holding one cluster-wide lock through its WAL flush: a job's chunks
    /// notifying at each commit made the API's consumes queue behind them
    /// (measured: consume p99 ×1.9–2.9 beside the expiry sweep,
    /// bench/results/2026-12-05-jobs-load.md).
    pub fn notify_after_run(&mut self) {
        self.notify = false;
    }

    /// The transaction, for a read of ledger tables (grants, entries,
    /// holds, wallets, keys): what is pending is written first.
    pub async fn read(&mut self) -> Result<&'t DatabaseTransaction, Error> {
        self.write_pending().await?;
        Ok(self.txn)
    }

    /// The transaction, to check an idempotency key and read what it names
    /// (a key is written with its rows): written first if the key waits
    /// here to be recorded.
    pub async fn for_key(&mut self, key: &str) -> Result<&'t DatabaseTransaction, Error> {
        if self.pending.has_key(key) {
            self.write_pending().await?;
        }
        Ok(self.txn)
    }

    /// The transaction, for the tables the ledger never writes
    /// (subscriptions, allowance periods, orders, the catalog). Nothing is
    /// written first; a read of a ledger table here could miss pending rows
    /// — use [`Session::read`] for those.
    pub fn outside_ledger(&self) -> &'t DatabaseTransaction {
        self.txn
    }

    /// Tells the session a credit system the caller has loaded: books of
    /// its wallets opened here won't look it up again.
    pub fn knows_credit_system(&mut self, cs: &credit_system::Model) {
        self.credit_systems
            .entry(cs.id)
            .or_insert_with(|| cs.clone());
    }

    /// A credit system this session was told of.
    pub fn credit_system(&self, id: CreditSystemId) -> Option<&credit_system::Model> {
        self.credit_systems.get(&id.uuid())
    }

    /// Tells the session the plans' low-credit limits for one
    /// (customer, credit system), which the caller loaded for many at once.
    pub fn knows_plan_limits(
        &mut self,
        customer_id: CustomerId,
        cs_id: CreditSystemId,
        limits: PlanLimits,
    ) {
        self.plan_limits
            .insert((customer_id.uuid(), cs_id.uuid()), limits);
    }

    /// Locks the wallet of (customer, credit system) and opens its book,
    /// creating the wallet first if `create`. `None`: no such wallet. Its
    /// pending writes, if any, are written first.
    pub async fn open(
        &mut self,
        tenant_id: Uuid,
        customer_id: CustomerId,
        credit_system_id: CreditSystemId,
        now: DateTime<Utc>,
        create: bool,
    ) -> Result<Option<Book<'t>>, Error> {
        if self
            .pending
            .touches_pair(customer_id.uuid(), credit_system_id.uuid())
        {
            self.write_pending().await?;
        }
        if let Some(p) = self
            .preloaded
            .remove(&(customer_id.uuid(), credit_system_id.uuid()))
            && p.wallet.tenant_id == tenant_id
        {
            let mut book = self.told(Book::of_locked(self.txn, p.wallet, p.grants, now));
            book.knows_lapsed_holds(p.lapsed_holds);
            return Ok(Some(book));
        }
        let book = Book::open(
            self.txn,
            tenant_id,
            customer_id,
            credit_system_id,
            now,
            create,
        )
        .await?;
        Ok(book.map(|b| self.told(b)))
    }

    /// Locks a wallet by id and opens its book (its pending writes, if any,
    /// written first). `None`: no such wallet in this tenant.
    pub async fn open_by_id(
        &mut self,
        tenant_id: Uuid,
        wallet_id: WalletId,
        now: DateTime<Utc>,
    ) -> Result<Option<Book<'t>>, Error> {
        if self.pending.touches(wallet_id.uuid()) {
            self.write_pending().await?;
        }
        let book = Book::open_by_id(self.txn, tenant_id, wallet_id, now).await?;
        Ok(book.map(|b| self.told(b)))
    }

    /// Locks the wallet a reference names with its credit system, in one
    /// statement, and opens its book with its state read in one more
    /// ([`Book::lock_by_ref`], [`Book::of_locked_settled`]): the hot path.
    /// `None`: the customer, the credit system or the wallet does not exist.
    pub async fn open_by_ref(
        &mut self,
        tenant_id: Uuid,
        wallet: &WalletRef,
        now: DateTime<Utc>,
    ) -> Result<Option<(Book<'t>, credit_system::Model)>, Error> {
        // A reference can't be matched against pending wallets before it is
        // resolved: write them (none on the API's paths).
        self.write_pending().await?;
        let Some((wallet, cs)) = Book::lock_by_ref(self.txn, tenant_id, wallet).await? else {
            return Ok(None);
        };
        let book = Book::of_locked_settled(self.txn, wallet, &cs, now).await?;
        Ok(Some((book, cs)))
    }

    /// Books for wallets the caller locked in bulk (the expiry sweep, which
    /// skips wallets another writer holds): their grants and lapsed holds
    /// are read for all of them in two statements ([`wallet_states`], as
    /// [`Session::preload`] reads them). A wallet whose writes are pending
    /// here is refused: its locked row would be stale.
    pub async fn adopt(
        &mut self,
        wallets: Vec<wallet::Model>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Book<'t>>, Error> {
        if wallets.iter().any(|w| self.pending.touches(w.id)) {
            return Err(Error::Db(DbErr::Custom(
                "a wallet with pending writes was loaded outside its session".into(),
            )));
        }
        let (mut grants, lapsed) = wallet_states(self.txn, &wallets, now).await?;
        Ok(wallets
            .into_iter()
            .map(|w| {
                let lapsed_holds = lapsed.contains(&w.id);
                let grants = grants.remove(&w.id).unwrap_or_default();
                let mut book = self.told(Book::of_locked(self.txn, w, grants, now));
                book.knows_lapsed_holds(lapsed_holds);
                book
            })
            .collect())
    }

    /// Locks and reads ahead the existing wallets of these (tenant,
    /// customer, credit system), for a batch job about to open them: three
    /// statements for all (the wallets, locked in id order; their grants
    /// that hold credits; which have a lapsed hold) instead of three per
    /// wallet. [`Session::open`] then serves each from what was read, once;
    /// a wallet opened again is read again (after its pending writes).
    pub async fn preload(
        &mut self,
        wallets: &[(Uuid, Uuid, Uuid)],
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.plan_each_statement().await?;
        for chunk in wallets.chunks(PRELOAD_CHUNK) {
            self.preload_chunk(chunk, now).await?;
        }
        Ok(())
    }

    /// On PostgreSQL, plans each statement of this transaction for its own
    /// parameters (`SET LOCAL plan_cache_mode = force_custom_plan`), once.
    /// A read-ahead's IN lists run as prepared statements; the plan cached
    /// for one, built while its table was small or not yet analyzed (a
    /// tenant's first resets, a bulk import), is a scan of the whole table,
    /// and stays while the table grows — the reset then slowed down with
    /// every chunk (measured: 70–220 ms per key read-ahead at 60k rows, for
    /// a 1 ms plan).
    pub async fn plan_each_statement(&mut self) -> Result<(), Error> {
        if !self.custom_plans && self.txn.get_database_backend() == DatabaseBackend::Postgres {
            self.txn
                .execute_unprepared("SET LOCAL plan_cache_mode = force_custom_plan")
                .await?;
        }
        self.custom_plans = true;
        Ok(())
    }

    async fn preload_chunk(
        &mut self,
        wallets: &[(Uuid, Uuid, Uuid)],
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let wanted: HashSet<(Uuid, Uuid, Uuid)> = wallets
            .iter()
            .filter(|(_, c, cs)| !self.pending.touches_pair(*c, *cs))
            .copied()
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        // Per tenant, `tenant_id = ?` and IN lists on the other columns of
        // `ux_wallet_customer_credit_system`: the index is searched by
        // (tenant, customer). (An IN list of tenants too is planned as a
        // scan of the tenant's rows on PostgreSQL.) The few other wallets of
        // these customers it may find are dropped.
        let mut by_tenant: BTreeMap<Uuid, (BTreeSet<Uuid>, BTreeSet<Uuid>)> = BTreeMap::new();
        for &(tenant, customer, cs) in &wanted {
            let (customers, systems) = by_tenant.entry(tenant).or_default();
            customers.insert(customer);
            systems.insert(cs);
        }
        let mut found: Vec<wallet::Model> = Vec::new();
        for (tenant, (customers, systems)) in by_tenant {
            let mut find = wallet::Entity::find()
                .filter(wallet::Column::TenantId.eq(tenant))
                .filter(wallet::Column::CustomerId.is_in(customers))
                .filter(wallet::Column::CreditSystemId.is_in(systems))
                .order_by_asc(wallet::Column::Id);
            if self.txn.get_database_backend() == DatabaseBackend::Postgres {
                // SQLite: BEGIN IMMEDIATE holds the write lock already.
                find = find.lock(LockType::Update);
            }
            found.extend(
                find.all(self.txn)
                    .await?
                    .into_iter()
                    .filter(|w| wanted.contains(&(w.tenant_id, w.customer_id, w.credit_system_id))),
            );
        }
        if found.is_empty() {
            return Ok(());
        }
        let (mut grants, lapsed) = wallet_states(self.txn, &found, now).await?;
        for w in found {
            let preloaded = Preloaded {
                grants: grants.remove(&w.id).unwrap_or_default(),
                lapsed_holds: lapsed.contains(&w.id),
                wallet: w,
            };
            let key = (
                preloaded.wallet.customer_id,
                preloaded.wallet.credit_system_id,
            );
            self.preloaded.insert(key, preloaded);
        }
        Ok(())
    }

    /// Looks up ahead which of these keys (by tenant) are unused, in one
    /// statement per [`PRELOAD_CHUNK`]: [`Session::check_key`] then answers
    /// for those without a statement of its own.
    pub async fn preload_keys(&mut self, keys: &[(Uuid, String)]) -> Result<(), Error> {
        self.plan_each_statement().await?;
        for chunk in keys.chunks(PRELOAD_CHUNK) {
            // Per tenant, `tenant_id = ? AND key IN (…)`: the primary key
            // searched by both columns (an IN list of tenants too is planned
            // as a scan of the tenant's keys on PostgreSQL).
            let mut by_tenant: BTreeMap<Uuid, BTreeSet<&str>> = BTreeMap::new();
            for (tenant, key) in chunk {
                by_tenant.entry(*tenant).or_default().insert(key);
            }
            let mut used: HashSet<(Uuid, String)> = HashSet::new();
            for (tenant, keys) in by_tenant {
                let found: Vec<(Uuid, String)> = idempotency_record::Entity::find()
                    .select_only()
                    .column(idempotency_record::Column::TenantId)
                    .column(idempotency_record::Column::Key)
                    .filter(idempotency_record::Column::TenantId.eq(tenant))
                    .filter(idempotency_record::Column::Key.is_in(keys))
                    .into_tuple()
                    .all(self.txn)
                    .await?;
                used.extend(found);
            }
            self.unused_keys.extend(
                chunk
                    .iter()
                    .filter(|k| !used.contains(k) && !self.pending.has_key(&k.1))
                    .cloned(),
            );
        }
        Ok(())
    }

    /// Whether a request's key is new, a replay, or a conflict: from what
    /// [`Session::preload_keys`] found (once), else looked up — after the
    /// pending writes when the key waits among them.
    pub async fn check_key(&mut self, tenant_id: Uuid, request: &Request) -> Result<Seen, Error> {
        let key = (tenant_id, request.key().as_str().to_owned());
        if self.unused_keys.remove(&key) {
            return Ok(Seen::New);
        }
        let txn = self.for_key(&key.1).await?;
        Ok(request.check(txn, tenant_id).await?)
    }

    fn told(&self, mut book: Book<'t>) -> Book<'t> {
        let (customer_id, cs_id) = (book.wallet.customer_id, book.wallet.credit_system_id);
        if let Some(cs) = self.credit_systems.get(&cs_id) {
            book.knows_credit_system(cs);
        }
        if let Some(limits) = self.plan_limits.get(&(customer_id, cs_id)) {
            book.knows_plan_limits(*limits);
        }
        book
    }

    /// An idempotency key to record with the next write (the book it names
    /// is finished after it): a key another
    /// transaction recorded meanwhile makes that write an
    /// `IDEMPOTENCY_CONFLICT` (the caller rolls back).
    pub fn record_key(&mut self, key: idempotency_record::Model) {
        self.pending.record_key(key);
    }

    /// An outbox event: written at once by a [`Session::new`], gathered by
    /// a [`Session::gathering`].
    pub async fn event(&mut self, event: outbox_event::ActiveModel) -> Result<(), Error> {
        self.pending.event(event);
        if self.mode == Mode::EachBook {
            self.write_pending().await?;
        }
        Ok(())
    }

    /// Finishes a book: its entries, grants, events and the wallet's new
    /// cache are written now ([`Session::new`]) or gathered
    /// ([`Session::gathering`]). Returns the wallet as it will be stored.
    pub async fn finish(&mut self, book: Book<'t>) -> Result<wallet::Model, Error> {
        let wallet = book.finish_into(&mut self.pending).await?;
        if self.mode == Mode::EachBook {
            self.write_pending().await?;
        }
        Ok(wallet)
    }

    /// [`Session::finish`] for the transaction's last book ([`Session::new`]
    /// only): the running mutation's audit row is written in the same
    /// statement instead of by an INSERT of its own at commit — one round
    /// trip less on the API's hot paths. The row is as the mutation's audit
    /// scope is now, so note what the mutation created before
    /// ([`crate::audit_log::note_created`]). Outside a request's scope
    /// (a job) it is [`Session::finish`].
    pub async fn finish_last(&mut self, book: Book<'t>) -> Result<wallet::Model, Error> {
        debug_assert_eq!(
            self.mode,
            Mode::EachBook,
            "a gathering session has no last book"
        );
        if let Some(row) = crate::audit_scope::row_with_last_write(self.txn) {
            self.pending.audit(row);
        }
        self.finish(book).await
    }

    /// Writes what is pending; the session stays usable.
    async fn write_pending(&mut self) -> Result<(), Error> {
        if !self.pending.is_empty() {
            self.pending.write(self.txn, self.notify).await?;
        }
        Ok(())
    }

    /// Writes what is pending and ends the session; the caller commits.
    pub async fn close(mut self) -> Result<(), Error> {
        self.write_pending().await
    }
}

/// What a book of each of these wallets needs besides the row, for all of
/// them in two statements: their grants that hold credits, and which have
/// an active hold past its deadline (to be returned before anything else).
async fn wallet_states(
    txn: &DatabaseTransaction,
    wallets: &[wallet::Model],
    now: DateTime<Utc>,
) -> Result<(HashMap<Uuid, Vec<credit_grant::Model>>, HashSet<Uuid>), DbErr> {
    if wallets.is_empty() {
        return Ok((HashMap::new(), HashSet::new()));
    }
    let ids: Vec<Uuid> = wallets.iter().map(|w| w.id).collect();
    let tenants: BTreeSet<Uuid> = wallets.iter().map(|w| w.tenant_id).collect();
    let mut grants: HashMap<Uuid, Vec<credit_grant::Model>> = HashMap::new();
    for g in credit_grant::Entity::find()
        .filter(credit_grant::Column::TenantId.is_in(tenants.iter().copied()))
        .filter(credit_grant::Column::WalletId.is_in(ids.iter().copied()))
        .filter(credit_grant::Column::RemainingMicros.gt(0))
        .all(txn)
        .await?
    {
        grants.entry(g.wallet_id).or_default().push(g);
    }
    let lapsed: HashSet<Uuid> = credit_hold::Entity::find()
        .select_only()
        .column(credit_hold::Column::WalletId)
        .filter(credit_hold::Column::TenantId.is_in(tenants.iter().copied()))
        .filter(credit_hold::Column::WalletId.is_in(ids.iter().copied()))
        .filter(credit_hold::Column::Status.eq(HoldStatus::Active.as_str()))
        .filter(credit_hold::Column::ExpiresAt.lte(now))
        .into_tuple()
        .all(txn)
        .await?
        .into_iter()
        .collect();
    Ok((grants, lapsed))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use entity::credit_grant;
    use rust_decimal::Decimal;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

    use super::*;
    use crate::{
        Clock, FixedClock,
        credit_systems::CreditSystemRef,
        customers::CustomerRef,
        ledger::{Category, GrantInput, Made, audit, grant_in},
        testing::TestDb,
    };

    struct World {
        t: TestDb,
        clock: FixedClock,
        tenant_id: Uuid,
        wallet: WalletRef,
        customer_id: CustomerId,
        cs_id: CreditSystemId,
    }

    async fn world() -> World {
        let t = TestDb::new().await;
        let clock = FixedClock::new(Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap());
        let seeded = crate::testing::seed_tenant(&t.db, &clock, "acme-corp", 0).await;
        World {
            wallet: WalletRef {
                customer: CustomerRef::Id(seeded.customer_id),
                credit_system: CreditSystemRef::Id(seeded.credit_system_id),
            },
            customer_id: seeded.customer_id,
            cs_id: seeded.credit_system_id,
            t,
            clock,
            tenant_id: seeded.tenant_id,
        }
    }

    fn input(w: &World, amount: i64, key: &str) -> GrantInput {
        GrantInput {
            wallet: w.wallet.clone(),
            amount: Decimal::from(amount),
            category: Category::Promotional,
            effective_at: None,
            expires_at: None,
            priority: None,
            cost_basis: None,
            reason: "test".into(),
            metadata: None,
            idempotency_key: key.into(),
        }
    }

    async fn grants_stored(txn: &DatabaseTransaction, tenant_id: Uuid) -> u64 {
        credit_grant::Entity::find()
            .filter(credit_grant::Column::TenantId.eq(tenant_id))
            .count(txn)
            .await
            .unwrap()
    }

    /// The stale-read rule, enforced: inside a gathering session, whatever
    /// reads the ledger — opening a wallet again, a grant through it, a
    /// read of its tables — sees the writes still pending in the session.
    #[tokio::test]
    async fn a_read_in_a_session_sees_its_own_pending_writes() {
        let w = world().await;
        let (clock, tenant_id) = (&w.clock, w.tenant_id);
        let now = w.clock.now();
        let txn = w.t.db.begin_write().await.unwrap();
        let mut session = Session::gathering(&txn);
        grant_in(
            &mut session,
            clock,
            tenant_id,
            &input(&w, 10, "g-1"),
            Made::default(),
        )
        .await
        .unwrap();
        // Gathered: not in the database yet.
        assert_eq!(grants_stored(session.outside_ledger(), tenant_id).await, 0);

        // Opening the wallet again sees the first grant.
        let book = session
            .open(tenant_id, w.customer_id, w.cs_id, now, false)
            .await
            .unwrap()
            .expect("the wallet exists");
        assert_eq!(book.available(), 10_000_000);
        assert_eq!(book.wallet.last_seq, 1);
        session.finish(book).await.unwrap();

        // A second grant through the session appends after the first.
        grant_in(
            &mut session,
            clock,
            tenant_id,
            &input(&w, 5, "g-2"),
            Made::default(),
        )
        .await
        .unwrap();
        // A read of the ledger's tables sees both.
        assert_eq!(
            grants_stored(session.read().await.unwrap(), tenant_id).await,
            2
        );

        // Its key, pending, is seen by the check of the same key: a replay,
        // not a second grant.
        let again = grant_in(
            &mut session,
            clock,
            tenant_id,
            &input(&w, 5, "g-2"),
            Made::default(),
        )
        .await
        .unwrap();
        assert_eq!(again.grant.amount, Decimal::from(5));
        session.close().await.unwrap();
        let wallet_id = entity::wallet::Entity::find()
            .filter(entity::wallet::Column::TenantId.eq(tenant_id))
            .one(&*txn)
            .await
            .unwrap()
            .unwrap()
            .id;
        txn.commit().await.unwrap();

        let stored = entity::wallet::Entity::find_by_id(wallet_id)
            .one(w.t.db.reader())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.balance_micros, 15_000_000);
        assert_eq!(stored.last_seq, 2);
        let problems =
            audit::verify_wallet(w.t.db.reader(), tenant_id, WalletId::from_uuid(wallet_id))
                .await
                .unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }

    /// A wallet loaded in bulk while its writes wait in the session would
    /// be stale: the session refuses to make a book of it.
    #[tokio::test]
    async fn a_pending_wallet_loaded_in_bulk_is_refused() {
        let w = world().await;
        let now = w.clock.now();
        let txn = w.t.db.begin_write().await.unwrap();
        let mut session = Session::gathering(&txn);
        grant_in(
            &mut session,
            &w.clock,
            w.tenant_id,
            &input(&w, 10, "g-1"),
            Made::default(),
        )
        .await
        .unwrap();
        let wallet = entity::wallet::Entity::find()
            .filter(entity::wallet::Column::TenantId.eq(w.tenant_id))
            .one(&*txn)
            .await
            .unwrap()
            .unwrap();
        assert!(session.adopt(vec![wallet.clone()], now).await.is_err());
        session.close().await.unwrap();
        // Once written, it may be, with the grant just written.
        let mut session = Session::gathering(&txn);
        let books = session.adopt(vec![wallet], now).await.unwrap();
        assert_eq!(books.len(), 1);
        assert_eq!(books[0].grants.len(), 1);
    }

    async fn audit_rows(db: &crate::Db) -> Vec<entity::audit_log::Model> {
        entity::audit_log::Entity::find()
            .all(db.reader())
            .await
            .unwrap()
    }

    /// [`Session::finish_last`] writes the mutation's audit row in the
    /// combined write: its commit does not write it again, and if that
    /// transaction rolls back, the next one's commit writes it — one row
    /// either way, naming what the mutation created.
    #[tokio::test]
    async fn the_audit_row_rides_with_the_last_write_once() {
        use crate::audit_log::{Actor, Mutation, Scope};
        use crate::ledger::{Attribution, ConsumeInput, consume};
        let w = world().await;
        let db = &w.t.db;
        crate::ledger::grant(db, &w.clock, w.tenant_id, &input(&w, 10, "g-1"))
            .await
            .unwrap();
        let scope = Scope::new(Mutation {
            tenant_id: w.tenant_id,
            actor: Actor::System,
            operation: "consumeCredits".into(),
            targets: vec!["idempotencyKey=c-1".into()],
            at: w.clock.now(),
        });
        let before = audit_rows(db).await.len();
        let out = scope
            .run(async {
                // A write carrying the row, rolled back.
                let txn = db.begin_write().await.unwrap();
                let mut session = Session::new(&txn);
                let book = session
                    .open(w.tenant_id, w.customer_id, w.cs_id, w.clock.now(), false)
                    .await
                    .unwrap()
                    .expect("the wallet exists");
                session.finish_last(book).await.unwrap();
                let carried = entity::audit_log::Entity::find()
                    .count(&*txn)
                    .await
                    .unwrap();
                assert_eq!(carried as usize, before + 1, "the write carried the row");
                txn.rollback().await.unwrap();
                // The consume's own transaction carries it again, and commits.
                let input = ConsumeInput {
                    wallet: w.wallet.clone(),
                    amount: Decimal::from(3),
                    attribution: Attribution::default(),
                    idempotency_key: "c-1".into(),
                };
                consume(db, &w.clock, w.tenant_id, &input).await.unwrap()
            })
            .await;
        scope.finish(db, Ok(())).await.unwrap();
        let rows = audit_rows(db).await;
        assert_eq!(rows.len(), before + 1, "one row for the mutation");
        let row = rows
            .iter()
            .find(|r| r.operation == "consumeCredits")
            .unwrap();
        let targets: Vec<String> = serde_json::from_str(&row.targets).unwrap();
        assert_eq!(
            targets,
            [
                "idempotencyKey=c-1".to_owned(),
                format!("ent_{}", out.entry.id.uuid().simple())
            ]
        );
        assert_eq!(row.outcome, "OK");
    }
}
