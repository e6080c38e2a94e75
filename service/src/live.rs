//! Live wallet changes, for GraphQL subscriptions.
//!
//! One feed per process tails the ledger — the committed truth, whichever
//! process wrote it (API replicas, the worker) — and broadcasts "this wallet
//! changed" to every subscriber in the process. Subscribers never touch the
//! database to learn *that* something changed; each reads the new balance
//! of its own wallet when told.
//!
//! How the tail works: entry ids are UUIDv7, so they sort by the (system)
//! time they were made. Every [`POLL`] the feed reads the ids made in the
//! last [`LOOKBACK`] (a primary-key range scan) and announces the wallets of
//! the ones it has not seen, so a transaction that commits up to
//! `LOOKBACK` after it started is still announced. Changes to one wallet
//! within a poll are announced once (subscribers read the latest balance).
//! With no subscriber in the process the feed does not query at all.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, Weak},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use entity::{ledger_entry, wallet};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::Db;

/// How often the feed looks for new entries.
pub const POLL: Duration = Duration::from_millis(200);
/// How late a commit may be (after its entries were made) and still be
/// announced.
pub const LOOKBACK: Duration = Duration::from_secs(10);
/// Entries read per query, and queries per poll.
const PAGE: u64 = 2_000;
const PAGES_PER_POLL: usize = 10;
/// Announcements buffered per subscriber; a slower one skips ahead
/// (it is told it lagged and re-reads its balance).
const CHANNEL: usize = 1_024;
/// Wallets whose owner the feed remembers.
const WALLET_CACHE: usize = 100_000;

/// A wallet whose balance changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletChange {
    pub tenant_id: Uuid,
    pub wallet_id: Uuid,
    pub customer_id: Uuid,
    pub credit_system_id: Uuid,
}

struct Inner {
    tx: broadcast::Sender<WalletChange>,
    /// When the first of the current subscribers arrived (system time):
    /// entries made since then are news to them.
    since: Mutex<Option<SystemTime>>,
}

/// The process's feed of wallet changes (cheap to clone).
#[derive(Clone)]
pub struct WalletFeed(Arc<Inner>);

impl WalletFeed {
    /// Starts the feed's tail on the tokio runtime; it stops when the last
    /// clone of the feed is dropped.
    pub fn start(db: Db) -> Self {
        let (tx, _) = broadcast::channel(CHANNEL);
        let feed = WalletFeed(Arc::new(Inner {
            tx,
            since: Mutex::new(None),
        }));
        tokio::spawn(tail(db, Arc::downgrade(&feed.0)));
        feed
    }

    /// Announcements from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<WalletChange> {
        let mut since = self.0.since.lock().unwrap_or_else(|e| e.into_inner());
        if self.0.tx.receiver_count() == 0 || since.is_none() {
            *since = Some(SystemTime::now());
        }
        self.0.tx.subscribe()
    }
}

/// The smallest UUIDv7 made at `t`.
fn lowest_id_at(t: SystemTime) -> Uuid {
    let millis = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid()
}

fn made_at(id: Uuid) -> SystemTime {
    match id.get_timestamp() {
        Some(ts) => {
            let (secs, nanos) = ts.to_unix();
            UNIX_EPOCH + Duration::new(secs, nanos)
        }
        None => UNIX_EPOCH,
    }
}

async fn tail(db: Db, feed: Weak<Inner>) {
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut wallets: HashMap<Uuid, WalletChange> = HashMap::new();
    loop {
        tokio::time::sleep(POLL).await;
        let Some(inner) = feed.upgrade() else { return };
        if inner.tx.receiver_count() == 0 {
            *inner.since.lock().unwrap_or_else(|e| e.into_inner()) = None;
            seen.clear();
            continue;
        }
        let since = inner
            .since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_else(SystemTime::now);
        match poll(&db, since, &mut seen, &mut wallets).await {
            Ok(changes) => {
                for change in changes {
                    // No receiver left is not an error.
                    let _ = inner.tx.send(change);
                }
            }
            Err(e) => tracing::warn!(error = %e, "wallet feed: reading the ledger failed"),
        }
    }
}

/// One poll: the wallets of entries made since `max(since, now −
/// LOOKBACK)` that were not seen before.
async fn poll(
    db: &Db,
    since: SystemTime,
    seen: &mut HashSet<Uuid>,
    wallets: &mut HashMap<Uuid, WalletChange>,
) -> Result<Vec<WalletChange>, DbErr> {
    let floor = since.max(SystemTime::now() - LOOKBACK);
    seen.retain(|id| made_at(*id) >= floor);
    let mut lower = lowest_id_at(floor);
    let mut changed: Vec<Uuid> = Vec::new();
    for page in 0..PAGES_PER_POLL {
        let rows: Vec<(Uuid, Uuid)> = ledger_entry::Entity::find()
            .select_only()
            .column(ledger_entry::Column::Id)
            .column(ledger_entry::Column::WalletId)
            .filter(if page == 0 {
                ledger_entry::Column::Id.gte(lower)
            } else {
                ledger_entry::Column::Id.gt(lower)
            })
            .order_by_asc(ledger_entry::Column::Id)
            .limit(PAGE)
            .into_tuple()
            .all(db.reader())
            .await?;
        let full = rows.len() as u64 == PAGE;
        for (id, wallet_id) in rows {
            lower = id;
            if seen.insert(id) && !changed.contains(&wallet_id) {
                changed.push(wallet_id);
            }
        }
        if !full {
            break;
        }
    }
    let unknown: Vec<Uuid> = changed
        .iter()
        .filter(|id| !wallets.contains_key(id))
        .copied()
        .collect();
    if !unknown.is_empty() {
        // A wallet's owner and credit system never change: cache them
        // (bounded: start over past WALLET_CACHE).
        if wallets.len() + unknown.len() > WALLET_CACHE {
            wallets.clear();
        }
        for w in wallet::Entity::find()
            .filter(wallet::Column::Id.is_in(unknown))
            .all(db.reader())
            .await?
        {
            wallets.insert(
                w.id,
                WalletChange {
                    tenant_id: w.tenant_id,
                    wallet_id: w.id,
                    customer_id: w.customer_id,
                    credit_system_id: w.credit_system_id,
                },
            );
        }
    }
    Ok(changed
        .iter()
        .filter_map(|id| wallets.get(id).copied())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_id_of_a_moment_sorts_before_ids_made_then_or_later() {
        let now = SystemTime::now();
        let low = lowest_id_at(now - Duration::from_millis(1));
        let id = Uuid::now_v7();
        assert!(low < id);
        assert!(made_at(id) >= now - Duration::from_millis(1));
        assert!(lowest_id_at(now + Duration::from_secs(1)) > id);
    }
}
