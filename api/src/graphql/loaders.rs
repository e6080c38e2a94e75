//! Batched loading for nested fields: one [`DataLoader`] per request,
//! scoped to the caller's tenant and to one `now`, so a whole query sees one
//! instant and costs the same number of statements for 1 customer as for 50.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use async_graphql::dataloader::{DataLoader, Loader};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use service::{
    Code, Db, DomainError,
    catalog::{self, Entitlement, Feature, Plan, PlanCredit, Product},
    credit_systems::{self, CreditSystem},
    customers::{self, Customer},
    ids::{
        CreditSystemId, CustomerId, EntryId, FeatureId, GrantId, HoldId, OrderId, PlanId,
        ProductId, WalletId,
    },
    ledger::{
        Balance, Entry, Grant, Hold, Split, Wallet,
        read::{self, EntryFilter, EntryWithSplits, GrantFilter},
        tree::{self, TreeSummary},
    },
    pagination::{Page, PageRequest},
    purchases::{self, TopUpOrder},
    subscriptions::{self, Subscription},
};
use uuid::Uuid;

/// What loaders need: the database, the tenant, and the request's instant.
pub struct Batch {
    db: Db,
    tenant_id: Uuid,
    now: DateTime<Utc>,
}

/// A request's loaders, and how many loads it has asked for so far (the
/// batch timing below watches it).
pub struct Loaders {
    loader: DataLoader<Batch>,
    asked: Arc<AtomicUsize>,
    /// Splits (with their grants) read with a page of entries
    /// ([`EntryPageWithSplitsKey`]), by entry, until its `splits` field
    /// takes them: no statement of their own.
    splits: Mutex<HashMap<Uuid, Vec<(Split, Grant)>>>,
}

impl Loaders {
    /// The request's instant.
    pub fn now(&self) -> DateTime<Utc> {
        self.loader.loader().now()
    }

    pub async fn load_one<K>(
        &self,
        key: K,
    ) -> Result<Option<<Batch as Loader<K>>::Value>, LoadError>
    where
        K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
        Batch: Loader<K, Error = LoadError>,
    {
        self.asked.fetch_add(1, Ordering::Relaxed);
        self.loader.load_one(key).await
    }

    /// Keeps the splits read with these entries for their `splits` field.
    pub fn prime_splits(&self, entries: impl IntoIterator<Item = (Uuid, Vec<(Split, Grant)>)>) {
        let mut primed = self.splits.lock().unwrap_or_else(|e| e.into_inner());
        primed.extend(entries);
    }

    /// The splits read with entry `id`'s page, once.
    pub fn primed_splits(&self, id: Uuid) -> Option<Vec<(Split, Grant)>> {
        let mut primed = self.splits.lock().unwrap_or_else(|e| e.into_inner());
        primed.remove(&id)
    }
}

/// Keys per batch. A query within the limits (`first` ≤ 200, depth ≤ 12)
/// that names more objects than this at one level costs one more statement
/// per 5,000; below it, the statement count does not depend on the data.
const BATCH_SIZE_MAX: usize = 5_000;

/// When a batch is taken: after the request has stopped asking for keys
/// for [`QUIET_TURNS`] turns of the executor in a row (then
/// [`BATCH_DELAY`]), at most [`TURNS_MAX`] turns.
///
/// async-graphql resolves a list's items 32 at a time, yielding to the
/// executor in between, so a level of 3,000 items takes ~100 turns to be
/// enqueued; a batch taken after a fixed short wait could fire halfway
/// through a level and cost a second statement. Waiting for quiet instead
/// of a fixed count keeps small levels fast: a fixed 256 turns per batch
/// cost the nested read most of its throughput under load (see README
/// "Performance").
const QUIET_TURNS: usize = 4;
/// async-graphql's delay after the quiet turns (its default is 1 ms per
/// batch, i.e. per level of the query).
const BATCH_DELAY: std::time::Duration = std::time::Duration::from_micros(200);
const TURNS_MAX: usize = 512;

pub fn loaders(db: Db, tenant_id: Uuid, now: DateTime<Utc>) -> Loaders {
    let asked = Arc::new(AtomicUsize::new(0));
    let watched = asked.clone();
    let loader = DataLoader::new(Batch { db, tenant_id, now }, move |fetch| {
        let asked = watched.clone();
        tokio::spawn(async move {
            let (mut seen, mut quiet) = (asked.load(Ordering::Relaxed), 0);
            for _ in 0..TURNS_MAX {
                tokio::task::yield_now().await;
                let now = asked.load(Ordering::Relaxed);
                if now == seen {
                    quiet += 1;
                    if quiet == QUIET_TURNS {
                        break;
                    }
                } else {
                    (seen, quiet) = (now, 0);
                }
            }
            fetch.await
        })
    })
    .max_batch_size(BATCH_SIZE_MAX)
    .delay(BATCH_DELAY);
    Loaders {
        loader,
        asked,
        splits: Mutex::default(),
    }
}

impl Batch {
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }
}

/// A failed batch: logged, and answered as `INTERNAL`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(Arc<str>);

impl DomainError for LoadError {
    fn code(&self) -> Code {
        Code::Internal
    }
}

fn fail(e: impl std::fmt::Display) -> LoadError {
    LoadError(e.to_string().into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustomerKey(pub CustomerId);
/// The usage-% alert thresholds a wallet without its own inherits:
/// (customer, credit system).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InheritedUsageAlertsKey(pub CustomerId, pub CreditSystemId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CreditSystemKey(pub CreditSystemId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WalletsOfCustomer(pub CustomerId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WalletKey(pub WalletId);
/// A customer's wallets, each with its credit system (one statement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WalletsWithCreditSystems(pub CustomerId);
/// A wallet's balance and, for `Some(days)`, its live credits expiring
/// within that many days (one statement: [`read::balances_expiring`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BalanceKey(pub WalletId, pub Option<i64>);
/// Wallet and days ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExpiringKey(pub WalletId, pub i64);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BalanceAtKey(pub WalletId, pub DateTime<Utc>);
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrantPageKey(pub WalletId, pub GrantFilter, pub PageRequest);
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryPageKey(pub WalletId, pub EntryFilter, pub PageRequest);
/// [`EntryPageKey`] with each entry's splits and their grants (one
/// statement: [`read::entry_pages_with_splits`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryPageWithSplitsKey(pub WalletId, pub EntryFilter, pub PageRequest);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SplitsKey(pub EntryId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrantKey(pub GrantId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryKey(pub EntryId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HoldKey(pub HoldId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProductKey(pub ProductId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlanKey(pub PlanId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeatureKey(pub FeatureId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlanCreditsOfPlan(pub PlanId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntitlementsOfPlan(pub PlanId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionsOfCustomer(pub CustomerId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderKey(pub OrderId);
/// A transfer entry's id → the customer on the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CounterpartyKey(pub EntryId);
/// A credit system by key (by id: [`CreditSystemKey`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CreditSystemByKey(pub String);
/// A page of a customer's children, each summed up in one credit system:
/// (parent, credit system, page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildrenKey(pub CustomerId, pub CreditSystemId, pub PageRequest);

fn ids<K, I>(keys: &[K], id: impl Fn(&K) -> I) -> Vec<I> {
    keys.iter().map(id).collect()
}

/// Groups keys that share their non-id part, so each group is one batch.
fn groups<K: Clone, G: Eq + std::hash::Hash + Clone>(
    keys: &[K],
    group: impl Fn(&K) -> G,
) -> HashMap<G, Vec<K>> {
    let mut out: HashMap<G, Vec<K>> = HashMap::new();
    for k in keys {
        out.entry(group(k)).or_default().push(k.clone());
    }
    out
}

/// Keys of the shape (owner id, non-id part): one `read` per group of keys
/// that share their non-id part, for all of the group's owners at once;
/// each key gets what `read` found for its owner (absent: not found).
async fn per_group<K, I, G, V, E, Fut>(
    keys: &[K],
    owner: impl Fn(&K) -> I,
    group: impl Fn(&K) -> G,
    read: impl Fn(Vec<I>, G) -> Fut,
) -> Result<HashMap<K, V>, LoadError>
where
    K: Clone + Eq + std::hash::Hash,
    I: Eq + std::hash::Hash,
    G: Eq + std::hash::Hash + Clone,
    E: std::fmt::Display,
    Fut: std::future::Future<Output = Result<HashMap<I, V>, E>>,
{
    let mut out = HashMap::new();
    for (g, keys) in groups(keys, group) {
        let mut found = read(ids(&keys, &owner), g).await.map_err(fail)?;
        for k in keys {
            if let Some(v) = found.remove(&owner(&k)) {
                out.insert(k, v);
            }
        }
    }
    Ok(out)
}

impl Loader<CustomerKey> for Batch {
    type Value = Customer;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[CustomerKey],
    ) -> Result<HashMap<CustomerKey, Customer>, LoadError> {
        let rows = customers::by_ids(&self.db, self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        Ok(rows.into_iter().map(|c| (CustomerKey(c.id), c)).collect())
    }
}

impl Loader<InheritedUsageAlertsKey> for Batch {
    type Value = service::notifications::usage::Settings;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[InheritedUsageAlertsKey],
    ) -> Result<HashMap<InheritedUsageAlertsKey, Self::Value>, LoadError> {
        let pairs: Vec<(CustomerId, CreditSystemId)> = keys.iter().map(|k| (k.0, k.1)).collect();
        let found =
            service::notifications::usage::inherited(&self.db, self.tenant_id, &pairs, self.now)
                .await
                .map_err(fail)?;
        Ok(found
            .into_iter()
            .map(|((customer, cs), settings)| (InheritedUsageAlertsKey(customer, cs), settings))
            .collect())
    }
}

impl Loader<CreditSystemKey> for Batch {
    type Value = CreditSystem;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[CreditSystemKey],
    ) -> Result<HashMap<CreditSystemKey, CreditSystem>, LoadError> {
        let rows = credit_systems::by_ids(&self.db, self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        Ok(rows
            .into_iter()
            .map(|c| (CreditSystemKey(c.id), c))
            .collect())
    }
}

impl Loader<CreditSystemByKey> for Batch {
    type Value = CreditSystem;
    type Error = LoadError;

    /// One statement per distinct key (a query names one or two). A key
    /// that names nothing is absent: the caller asks again for the error.
    async fn load(
        &self,
        keys: &[CreditSystemByKey],
    ) -> Result<HashMap<CreditSystemByKey, CreditSystem>, LoadError> {
        let mut out = HashMap::new();
        for k in keys {
            let which = credit_systems::CreditSystemRef::Key(k.0.clone());
            match credit_systems::get(&self.db, self.tenant_id, &which).await {
                Ok(cs) => {
                    out.insert(k.clone(), cs);
                }
                Err(e) if matches!(e.code(), Code::NotFound | Code::Validation) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(out)
    }
}

impl Loader<ChildrenKey> for Batch {
    type Value = Page<TreeSummary>;
    type Error = LoadError;

    /// Per (credit system, page): one statement for the pages of children
    /// of every parent, then the children's summaries all at once
    /// ([`tree::summaries`]), so a level of the tree costs the same
    /// statements for 3 parents as for 30.
    async fn load(
        &self,
        keys: &[ChildrenKey],
    ) -> Result<HashMap<ChildrenKey, Page<TreeSummary>>, LoadError> {
        let mut out = HashMap::new();
        for ((credit_system_id, page), keys) in groups(keys, |k| (k.1, k.2)) {
            let pages =
                customers::children_pages(&self.db, self.tenant_id, &ids(&keys, |k| k.0), page)
                    .await
                    .map_err(fail)?;
            let children: Vec<CustomerId> = pages
                .values()
                .flat_map(|p| p.items.iter().copied())
                .collect();
            let mut found = tree::summaries(
                &self.db,
                self.tenant_id,
                credit_system_id,
                &children,
                true,
                self.now,
            )
            .await
            .map_err(fail)?;
            for k in keys {
                if let Some(p) = pages.get(&k.0) {
                    let items = p.items.iter().filter_map(|id| found.remove(id)).collect();
                    out.insert(
                        k,
                        Page {
                            items,
                            has_next_page: p.has_next_page,
                        },
                    );
                }
            }
        }
        Ok(out)
    }
}

impl Loader<WalletsOfCustomer> for Batch {
    type Value = Vec<Wallet>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[WalletsOfCustomer],
    ) -> Result<HashMap<WalletsOfCustomer, Vec<Wallet>>, LoadError> {
        let mut found = read::wallets_of_customers(&self.db, self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        Ok(keys
            .iter()
            .map(|k| (*k, found.remove(&k.0).unwrap_or_default()))
            .collect())
    }
}

impl Loader<WalletKey> for Batch {
    type Value = Wallet;
    type Error = LoadError;

    async fn load(&self, keys: &[WalletKey]) -> Result<HashMap<WalletKey, Wallet>, LoadError> {
        let rows = read::wallets_by_ids(&self.db, self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        Ok(rows.into_iter().map(|w| (WalletKey(w.id), w)).collect())
    }
}

impl Loader<BalanceKey> for Batch {
    /// The balance, and the credits expiring within the key's days (0
    /// without days).
    type Value = (Balance, Decimal);
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[BalanceKey],
    ) -> Result<HashMap<BalanceKey, (Balance, Decimal)>, LoadError> {
        per_group(
            keys,
            |k| k.0,
            |k| k.1,
            |wallets, days| async move {
                let until = days.map(|d| self.now + Duration::days(d));
                read::balances_expiring(&self.db, self.tenant_id, &wallets, self.now, until).await
            },
        )
        .await
    }
}

impl Loader<WalletsWithCreditSystems> for Batch {
    type Value = Vec<(Wallet, CreditSystem)>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[WalletsWithCreditSystems],
    ) -> Result<HashMap<WalletsWithCreditSystems, Self::Value>, LoadError> {
        let mut found =
            read::wallets_with_credit_systems(&self.db, self.tenant_id, &ids(keys, |k| k.0))
                .await
                .map_err(fail)?;
        Ok(keys
            .iter()
            .map(|k| (*k, found.remove(&k.0).unwrap_or_default()))
            .collect())
    }
}

impl Loader<ExpiringKey> for Batch {
    type Value = Decimal;
    type Error = LoadError;

    async fn load(&self, keys: &[ExpiringKey]) -> Result<HashMap<ExpiringKey, Decimal>, LoadError> {
        let found = per_group(
            keys,
            |k| k.0,
            |k| k.1,
            |wallets, days| async move {
                let until = self.now + Duration::days(days);
                read::expiring_between(&self.db, self.tenant_id, &wallets, self.now, until).await
            },
        )
        .await?;
        Ok(or_zero(keys, found))
    }
}

impl Loader<BalanceAtKey> for Batch {
    type Value = Decimal;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[BalanceAtKey],
    ) -> Result<HashMap<BalanceAtKey, Decimal>, LoadError> {
        let found =
            per_group(
                keys,
                |k| k.0,
                |k| k.1,
                |wallets, at| async move {
                    read::balances_at(&self.db, self.tenant_id, &wallets, at).await
                },
            )
            .await?;
        Ok(or_zero(keys, found))
    }
}

/// `found`, with zero for every key it has nothing for (a wallet without
/// such credits).
fn or_zero<K: Copy + Eq + std::hash::Hash>(
    keys: &[K],
    mut found: HashMap<K, Decimal>,
) -> HashMap<K, Decimal> {
    for k in keys {
        found.entry(*k).or_default();
    }
    found
}

impl Loader<GrantPageKey> for Batch {
    type Value = Page<Grant>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[GrantPageKey],
    ) -> Result<HashMap<GrantPageKey, Page<Grant>>, LoadError> {
        per_group(
            keys,
            |k| k.0,
            |k| (k.1.clone(), k.2),
            |wallets, (filter, page)| async move {
                read::grant_pages(&self.db, self.tenant_id, &wallets, &filter, page, self.now).await
            },
        )
        .await
    }
}

impl Loader<EntryPageKey> for Batch {
    type Value = Page<Entry>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[EntryPageKey],
    ) -> Result<HashMap<EntryPageKey, Page<Entry>>, LoadError> {
        per_group(
            keys,
            |k| k.0,
            |k| (k.1.clone(), k.2),
            |wallets, (filter, page)| async move {
                read::entry_pages(&self.db, self.tenant_id, &wallets, &filter, page).await
            },
        )
        .await
    }
}

impl Loader<EntryPageWithSplitsKey> for Batch {
    type Value = Page<EntryWithSplits>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[EntryPageWithSplitsKey],
    ) -> Result<HashMap<EntryPageWithSplitsKey, Page<EntryWithSplits>>, LoadError> {
        per_group(
            keys,
            |k| k.0,
            |k| (k.1.clone(), k.2),
            |wallets, (filter, page)| async move {
                read::entry_pages_with_splits(&self.db, self.tenant_id, &wallets, &filter, page)
                    .await
            },
        )
        .await
    }
}

impl Loader<SplitsKey> for Batch {
    type Value = Vec<Split>;
    type Error = LoadError;

    async fn load(&self, keys: &[SplitsKey]) -> Result<HashMap<SplitsKey, Vec<Split>>, LoadError> {
        let mut found = read::splits_of_entries(&self.db, self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        Ok(keys
            .iter()
            .map(|k| (*k, found.remove(&k.0).unwrap_or_default()))
            .collect())
    }
}

impl Loader<GrantKey> for Batch {
    type Value = Grant;
    type Error = LoadError;

    async fn load(&self, keys: &[GrantKey]) -> Result<HashMap<GrantKey, Grant>, LoadError> {
        let rows = read::grants_by_ids(&self.db, self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        Ok(rows.into_iter().map(|g| (GrantKey(g.id), g)).collect())
    }
}

impl Loader<EntryKey> for Batch {
    type Value = Entry;
    type Error = LoadError;

    async fn load(&self, keys: &[EntryKey]) -> Result<HashMap<EntryKey, Entry>, LoadError> {
        let rows = read::entries_by_ids(&self.db, self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        Ok(rows.into_iter().map(|e| (EntryKey(e.id), e)).collect())
    }
}

impl Loader<HoldKey> for Batch {
    type Value = Hold;
    type Error = LoadError;

    async fn load(&self, keys: &[HoldKey]) -> Result<HashMap<HoldKey, Hold>, LoadError> {
        let rows = read::holds_by_ids(&self.db, self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        Ok(rows.into_iter().map(|h| (HoldKey(h.id), h)).collect())
    }
}

impl Loader<ProductKey> for Batch {
    type Value = Product;
    type Error = LoadError;

    async fn load(&self, keys: &[ProductKey]) -> Result<HashMap<ProductKey, Product>, LoadError> {
        let rows = catalog::products_by_ids(&self.db, self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        Ok(rows.into_iter().map(|p| (ProductKey(p.id), p)).collect())
    }
}

impl Loader<PlanKey> for Batch {
    type Value = Plan;
    type Error = LoadError;

    async fn load(&self, keys: &[PlanKey]) -> Result<HashMap<PlanKey, Plan>, LoadError> {
        let rows = catalog::plans_by_ids(&self.db, self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        Ok(rows.into_iter().map(|p| (PlanKey(p.id), p)).collect())
    }
}

impl Loader<FeatureKey> for Batch {
    type Value = Feature;
    type Error = LoadError;

    async fn load(&self, keys: &[FeatureKey]) -> Result<HashMap<FeatureKey, Feature>, LoadError> {
        let rows = catalog::features_by_ids(&self.db, self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        Ok(rows.into_iter().map(|f| (FeatureKey(f.id), f)).collect())
    }
}

impl Loader<PlanCreditsOfPlan> for Batch {
    type Value = Vec<PlanCredit>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[PlanCreditsOfPlan],
    ) -> Result<HashMap<PlanCreditsOfPlan, Vec<PlanCredit>>, LoadError> {
        let rows = catalog::plan_credits_of(self.db.reader(), self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        let mut out: HashMap<PlanCreditsOfPlan, Vec<PlanCredit>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for pc in rows {
            out.entry(PlanCreditsOfPlan(pc.plan_id))
                .or_default()
                .push(pc);
        }
        Ok(out)
    }
}

impl Loader<EntitlementsOfPlan> for Batch {
    type Value = Vec<Entitlement>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[EntitlementsOfPlan],
    ) -> Result<HashMap<EntitlementsOfPlan, Vec<Entitlement>>, LoadError> {
        let rows = catalog::entitlements_of(self.db.reader(), self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        let mut out: HashMap<EntitlementsOfPlan, Vec<Entitlement>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for e in rows {
            out.entry(EntitlementsOfPlan(e.plan_id))
                .or_default()
                .push(e);
        }
        Ok(out)
    }
}

impl Loader<SubscriptionsOfCustomer> for Batch {
    type Value = Vec<Subscription>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[SubscriptionsOfCustomer],
    ) -> Result<HashMap<SubscriptionsOfCustomer, Vec<Subscription>>, LoadError> {
        let mut found = subscriptions::of_customers(&self.db, self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        Ok(keys
            .iter()
            .map(|k| (*k, found.remove(&k.0).unwrap_or_default()))
            .collect())
    }
}

impl Loader<OrderKey> for Batch {
    type Value = TopUpOrder;
    type Error = LoadError;

    async fn load(&self, keys: &[OrderKey]) -> Result<HashMap<OrderKey, TopUpOrder>, LoadError> {
        let rows = purchases::by_ids(&self.db, self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        Ok(rows.into_iter().map(|o| (OrderKey(o.id), o)).collect())
    }
}

impl Loader<CounterpartyKey> for Batch {
    type Value = CustomerId;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[CounterpartyKey],
    ) -> Result<HashMap<CounterpartyKey, CustomerId>, LoadError> {
        let found = read::counterparties(&self.db, self.tenant_id, &ids(keys, |k| k.0))
            .await
            .map_err(fail)?;
        Ok(found
            .into_iter()
            .map(|(entry_id, customer_id)| (CounterpartyKey(entry_id), customer_id))
            .collect())
    }
}
