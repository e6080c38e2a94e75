//! Durability (issue 14): a write that fails at COMMIT is refused and
//! leaves nothing behind, the connection it ran on never serves another
//! request half-open, and every write acknowledged before, during and
//! after the fault is in the database after a restart.
//!
//! Each scenario sends a stream of grants and consumes, each with its own
//! idempotency key (and, now and then, a consume too large to be covered,
//! refused with `INSUFFICIENT_CREDITS`: such a rolled-back request is what
//! used to leave a poisoned SQLite connection stuck inside a transaction),
//! records every answer, injects a fault, lifts it, then restarts (closes
//! the pools, connects afresh to the same database) and checks:
//!
//! 1. every write answered ok is in the ledger, as answered; no refused
//!    write left an entry; the wallet's audit finds nothing wrong; while
//!    running, every ok continued the running balance of the ones before
//!    it, and a reader saw the same balance;
//! 2. replaying every key returns what was first answered: an ok gives the
//!    same entry again; a write refused by the fault (`INTERNAL`) left no
//!    trace, so its retry applies it, once (a second retry returns that);
//!    one refused by a rule (`INSUFFICIENT_CREDITS`) is refused again.

mod common;

use std::collections::HashSet;

use common::*;
use entity::ledger_entry;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Statement};
use service::{
    Clock, Code, Db, DomainError,
    db::DbConfig,
    ledger::{self, Entry, audit},
};

/// The file-size limit below is per process: the tests of this file take
/// turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The seed grant; every refused-by-rule consume asks for more than any
/// balance this test reaches.
const SEED: &str = "1000000";
const TOO_MUCH: &str = "1000000000";

#[derive(Debug, Clone)]
enum Op {
    Grant(ledger::GrantInput),
    Consume(ledger::ConsumeInput),
}

#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Ok(Box<Entry>),
    Refused(Code),
}

struct Sent {
    op: Op,
    answer: Answer,
}

impl Op {
    /// The `n`-th write of a stream: one grant of 5 in four, one consume
    /// that can't be covered in ten, consumes of 1 otherwise.
    fn nth(w: &World, n: usize) -> Self {
        if n % 10 == 3 {
            Op::Consume(w.consume_input(TOO_MUCH))
        } else if n.is_multiple_of(4) {
            Op::Grant(w.grant_input("5"))
        } else {
            Op::Consume(w.consume_input("1"))
        }
    }

    fn key(&self) -> &str {
        match self {
            Op::Grant(i) => &i.idempotency_key,
            Op::Consume(i) => &i.idempotency_key,
        }
    }

    /// What it does to the balance when it applies.
    fn delta(&self) -> Decimal {
        match self {
            Op::Grant(i) => i.amount,
            Op::Consume(i) => -i.amount,
        }
    }

    async fn send(&self, db: &Db, w: &World) -> Answer {
        let answer = match self {
            Op::Grant(i) => ledger::grant(db, &w.clock, w.tenant_id, i)
                .await
                .map(|o| o.entry.expect("effective now: booked")),
            Op::Consume(i) => ledger::consume(db, &w.clock, w.tenant_id, i)
                .await
                .map(|o| o.entry),
        };
        match answer {
            Ok(entry) => Answer::Ok(Box::new(entry)),
            Err(e) => Answer::Refused(e.code()),
        }
    }
}

/// Sends writes, keeping the running balance of the acknowledged ones.
struct Run<'a> {
    w: &'a World,
    db: Db,
    wallet_id: service::ids::WalletId,
    balance: Decimal,
    sent: Vec<Sent>,
}

impl<'a> Run<'a> {
    async fn new(w: &'a World) -> Self {
        w.grant(SEED, None).await;
        Self {
            w,
            db: w.t.db.clone(),
            wallet_id: w.wallet_id().await,
            balance: d(SEED),
            sent: Vec::new(),
        }
    }

    /// Sends `count` writes; returns their answers.
    async fn send(&mut self, count: usize) -> Vec<Answer> {
        let mut answers = Vec::new();
        for _ in 0..count {
            let op = Op::nth(self.w, self.sent.len());
            let answer = op.send(&self.db, self.w).await;
            if let Answer::Ok(entry) = &answer {
                self.balance += op.delta();
                assert_eq!(
                    entry.balance_after,
                    self.balance,
                    "write {} ({}) was acknowledged with a balance that does not follow the ones acknowledged before it",
                    self.sent.len(),
                    op.key()
                );
            }
            answers.push(answer.clone());
            self.sent.push(Sent { op, answer });
        }
        answers
    }

    /// A reader sees the balance of the writes acknowledged so far.
    async fn reader_sees_the_truth(&self, when: &str) {
        let balances = ledger::read::balances(
            &self.db,
            self.w.tenant_id,
            &[self.wallet_id],
            self.w.clock.now(),
        )
        .await
        .unwrap();
        assert_eq!(
            balances[&self.wallet_id].available, self.balance,
            "{when}: a reader does not see the acknowledged balance"
        );
    }

    /// Closes the pools, connects afresh to the same database, and checks
    /// what the module doc promises.
    async fn restart_and_check(self) {
        let Run {
            w,
            db,
            wallet_id,
            balance,
            sent,
        } = self;
        db.close().await.unwrap();
        let db = Db::connect(&DbConfig::new(w.t.url.clone())).await.unwrap();
        let ok: Vec<&Entry> = sent
            .iter()
            .filter_map(|s| match &s.answer {
                Answer::Ok(e) => Some(&**e),
                Answer::Refused(_) => None,
            })
            .collect();
        let refused: HashSet<&str> = sent
            .iter()
            .filter(|s| matches!(s.answer, Answer::Refused(_)))
            .map(|s| s.op.key())
            .collect();

        // 1. Acknowledged = stored, refused = absent, ledger consistent.
        let entries = ledger_entry::Entity::find()
            .filter(ledger_entry::Column::WalletId.eq(wallet_id))
            .all(db.reader())
            .await
            .unwrap();
        let stored = ledger::read::entries_by_ids(
            &db,
            w.tenant_id,
            &ok.iter().map(|e| e.id).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        assert_eq!(
            stored.len(),
            ok.len(),
            "{} of {} acknowledged writes are gone after the restart",
            ok.len() - stored.len(),
            ok.len()
        );
        for entry in &ok {
            let found = stored.iter().find(|s| s.id == entry.id).unwrap();
            assert_eq!(found, *entry, "an acknowledged entry changed");
        }
        let leaked: Vec<_> = entries
            .iter()
            .filter(|e| {
                e.idempotency_key
                    .as_deref()
                    .is_some_and(|k| refused.contains(k))
            })
            .collect();
        assert!(
            leaked.is_empty(),
            "refused writes are in the ledger: {leaked:#?}"
        );
        assert_eq!(
            entries.len(),
            1 + ok.len(),
            "the seed grant and the acknowledged writes, nothing else"
        );
        verify(&db, w, wallet_id).await;
        let last = entries.iter().max_by_key(|e| e.seq).unwrap();
        assert_eq!(Decimal::new(last.balance_after_micros, 6), balance);

        // 2. Replays answer what was first answered.
        let mut retried = 0;
        for s in &sent {
            let again = s.op.send(&db, w).await;
            match &s.answer {
                Answer::Ok(_) | Answer::Refused(Code::InsufficientCredits) => {
                    assert_eq!(again, s.answer, "replay of {}", s.op.key());
                }
                Answer::Refused(Code::Internal) => {
                    let Answer::Ok(applied) = &again else {
                        panic!("retry of {} (refused by the fault): {again:?}", s.op.key());
                    };
                    assert_eq!(applied.amount, s.op.delta());
                    assert_eq!(
                        s.op.send(&db, w).await,
                        again,
                        "second retry of {}",
                        s.op.key()
                    );
                    retried += 1;
                }
                other => panic!("unexpected answer {other:?} to {}", s.op.key()),
            }
        }
        let entries_after = ledger_entry::Entity::find()
            .filter(ledger_entry::Column::WalletId.eq(wallet_id))
            .all(db.reader())
            .await
            .unwrap();
        assert_eq!(
            entries_after.len(),
            entries.len() + retried,
            "each retry applied once"
        );
        verify(&db, w, wallet_id).await;
        db.close().await.unwrap();
    }
}

async fn verify(db: &Db, w: &World, wallet_id: service::ids::WalletId) {
    let problems = audit::verify_wallet(db.reader(), w.tenant_id, wallet_id)
        .await
        .unwrap();
    assert!(
        problems.is_empty(),
        "ledger invariants broken: {problems:#?}"
    );
}

fn count(answers: &[Answer], f: impl Fn(&Answer) -> bool) -> usize {
    answers.iter().filter(|a| f(a)).count()
}

/// Prints how a phase's writes were answered (shown with `--nocapture`).
fn report(phase: &str, answers: &[Answer]) {
    eprintln!(
        "{phase}: {} ok, {} INTERNAL, {} INSUFFICIENT_CREDITS",
        count(answers, is_ok),
        count(answers, is_internal),
        count(answers, |a| *a
            == Answer::Refused(Code::InsufficientCredits)),
    );
}

fn is_ok(a: &Answer) -> bool {
    matches!(a, Answer::Ok(_))
}

fn is_internal(a: &Answer) -> bool {
    *a == Answer::Refused(Code::Internal)
}

/// While alive, files this process writes can't grow past `bytes`
/// (`RLIMIT_FSIZE`): SQLite's writes past it fail (`EFBIG` → "disk I/O
/// error", or a short write → "database or disk is full"), as on a full
/// disk, without root. Dropping it lifts the limit.
struct FileSizeLimit {
    _sigxfsz: tokio::signal::unix::Signal,
}

impl FileSizeLimit {
    fn new(bytes: u64) -> Self {
        use rustix::process::{Resource, Rlimit, Signal, getrlimit, setrlimit};
        // Going past the limit raises SIGXFSZ, which would end the process:
        // handle it, so the write fails instead.
        let sigxfsz = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(
            Signal::XFSZ.as_raw(),
        ))
        .unwrap();
        let maximum = getrlimit(Resource::Fsize).maximum;
        setrlimit(
            Resource::Fsize,
            Rlimit {
                current: Some(bytes),
                maximum,
            },
        )
        .unwrap();
        Self { _sigxfsz: sigxfsz }
    }
}

impl Drop for FileSizeLimit {
    fn drop(&mut self) {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let maximum = getrlimit(Resource::Fsize).maximum;
        setrlimit(
            Resource::Fsize,
            Rlimit {
                current: maximum,
                maximum,
            },
        )
        .unwrap();
    }
}

async fn pragma(db: &Db, sql: &str) -> i64 {
    db.writer()
        .query_one_raw(Statement::from_string(db.backend(), sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

/// SQLite, the file and then the disk full: the fault refuses writes, no
/// write is acknowledged while it lasts, and once it is lifted every write
/// is acknowledged, committed and seen.
#[tokio::test]
async fn sqlite_full_disk_refuses_writes_and_loses_none() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let w = World::new(0).await;
    if w.t.is_postgres() {
        return;
    }
    let mut run = Run::new(&w).await;
    run.send(20).await;

    // The file is full: no new page (`PRAGMA max_page_count`, on the
    // writer connection). A statement that needs a page fails; SQLite
    // rolls back that statement or, for some, the whole transaction
    // (which used to leave the connection poisoned, as below).
    let pages = pragma(&run.db, "PRAGMA page_count").await;
    let mut answers = Vec::new();
    for _ in 0..100 {
        // Again before each write: a failure may have replaced the writer
        // connection, and the new one has no limit.
        pragma(&run.db, &format!("PRAGMA max_page_count = {pages}")).await;
        answers.extend(run.send(1).await);
    }
    report("file full", &answers);
    assert!(
        count(&answers, is_internal) > 0,
        "the full file refused no write: {answers:?}"
    );
    pragma(&run.db, "PRAGMA max_page_count = 1073741823").await;
    run.reader_sees_the_truth("after the full file").await;
    report("file no longer full", &run.send(20).await);
    run.reader_sees_the_truth("after the full file was lifted")
        .await;

    // The disk is full: COMMIT can't append to the write-ahead log, and
    // SQLite rolls the whole transaction back (as on the failure found in
    // production). The log is emptied first so that it is what hits the
    // limit.
    pragma(&run.db, "PRAGMA wal_checkpoint(TRUNCATE)").await;
    let limit = FileSizeLimit::new(128 * 1024);
    let answers = run.send(150).await;
    drop(limit);
    report("disk full", &answers);
    let first_refused = answers
        .iter()
        .position(is_internal)
        .expect("the full disk refused no write");
    let acknowledged_while_full = count(&answers[first_refused..], is_ok);
    assert_eq!(
        acknowledged_while_full, 0,
        "writes were acknowledged while the disk was full"
    );
    run.reader_sees_the_truth("while the disk is full").await;

    // Space again: every write is acknowledged, and seen at once.
    let answers = run.send(150).await;
    report("disk freed", &answers);
    let by_rule = count(&answers, |a| {
        *a == Answer::Refused(Code::InsufficientCredits)
    });
    assert_eq!(
        count(&answers, is_ok),
        answers.len() - by_rule,
        "{answers:?}"
    );
    run.reader_sees_the_truth("after the disk was freed").await;

    run.restart_and_check().await;
}

/// PostgreSQL, COMMIT failing: a deferred constraint trigger on
/// `ledger_entry` fails at COMMIT while a fault is set, either raising an
/// error or terminating its own backend (the connection is lost during
/// COMMIT). Both abort the transaction before it commits.
#[tokio::test]
async fn postgres_failed_commit_refuses_writes_and_loses_none() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let w = World::new(0).await;
    if !w.t.is_postgres() {
        return;
    }
    let conn = w.t.db.writer();
    for sql in [
        "CREATE TABLE durability_fault (mode text NOT NULL)",
        "CREATE FUNCTION durability_fault() RETURNS trigger LANGUAGE plpgsql AS $$
         DECLARE m text;
         BEGIN
           SELECT mode INTO m FROM durability_fault LIMIT 1;
           IF m = 'raise' THEN
             RAISE EXCEPTION 'injected COMMIT failure';
           ELSIF m = 'kill' THEN
             PERFORM pg_terminate_backend(pg_backend_pid());
             PERFORM pg_sleep(5); -- the termination lands here, before the commit
           END IF;
           RETURN NULL;
         END $$",
        "CREATE CONSTRAINT TRIGGER durability_fault AFTER INSERT ON ledger_entry
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION durability_fault()",
    ] {
        conn.execute_unprepared(sql).await.unwrap();
    }
    let mut run = Run::new(&w).await;
    run.send(20).await;
    for mode in ["raise", "kill"] {
        conn.execute_unprepared(&format!("INSERT INTO durability_fault VALUES ('{mode}')"))
            .await
            .unwrap();
        let answers = run.send(30).await;
        conn.execute_unprepared("DELETE FROM durability_fault")
            .await
            .unwrap();
        report(mode, &answers);
        let by_rule = count(&answers, |a| {
            *a == Answer::Refused(Code::InsufficientCredits)
        });
        assert_eq!(
            count(&answers, is_internal),
            answers.len() - by_rule,
            "{mode}: every write refused: {answers:?}"
        );
        run.reader_sees_the_truth(mode).await;
        let answers = run.send(20).await;
        let by_rule = count(&answers, |a| {
            *a == Answer::Refused(Code::InsufficientCredits)
        });
        assert_eq!(
            count(&answers, is_ok),
            answers.len() - by_rule,
            "after {mode}: {answers:?}"
        );
        run.reader_sees_the_truth(&format!("after {mode}")).await;
    }
    run.restart_and_check().await;
}
