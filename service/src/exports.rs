//! The ledger as CSV rows, read in bounded keyset pages so an export of any
//! size streams with constant memory. The scope is a report's
//! ([`Scope`]): the tenant, one customer, or a customer and its subtree.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DbErr, Value};
use uuid::Uuid;

use crate::{
    Db,
    amount::from_micros,
    db::statement,
    ids::{self, Kind},
    ledger::EntryType,
    reports::Scope,
};

/// Rows per page of an export.
pub const PAGE_ROWS: u64 = 1_000;

/// The CSV header, in column order. Every id is the API's (`ent_…`,
/// `cus_…`, `ord_…`: [`crate::ids`]), so it works as an argument; each
/// customer and credit system is also named by its external id and key.
pub const HEADER: [&str; 21] = [
    "entry_id",
    "created_at",
    "customer_id",
    "customer_external_id",
    "credit_system_id",
    "credit_system_key",
    "wallet_id",
    "type",
    "amount",
    "balance_after",
    "feature",
    "quantity",
    "event_ref",
    "user_ref",
    "grant_id",
    "grant_category",
    "order_id",
    "payment_id",
    "description",
    "counterparty_id",
    "counterparty_external_id",
];

#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub scope: Scope,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub types: Option<Vec<EntryType>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    pub entry_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub customer_id: Uuid,
    pub customer_external_id: String,
    pub credit_system_id: Uuid,
    pub credit_system_key: String,
    pub wallet_id: Uuid,
    pub entry_type: String,
    pub amount: Decimal,
    pub balance_after: Decimal,
    pub feature: Option<String>,
    pub quantity: Option<Decimal>,
    pub event_ref: Option<String>,
    pub user_ref: Option<String>,
    pub grant_id: Option<Uuid>,
    pub grant_category: Option<String>,
    /// The top-up order that bought the entry's grant.
    pub order_id: Option<Uuid>,
    /// The payment gateway's id of that order's payment (not ours).
    pub payment_id: Option<String>,
    pub description: Option<String>,
    /// For TRANSFER_OUT: the customer the credits went to; for
    /// TRANSFER_IN: the one they came from.
    pub counterparty_id: Option<Uuid>,
    pub counterparty_external_id: Option<String>,
}

impl ExportRow {
    /// The row's fields, in [`HEADER`] order (timestamps ISO 8601 UTC,
    /// amounts exact decimals).
    pub fn fields(&self) -> [String; 21] {
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        let id =
            |kind: Kind, o: Option<Uuid>| o.map(|id| ids::encode(kind, id)).unwrap_or_default();
        [
            ids::encode(Kind::Entry, self.entry_id),
            self.created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ids::encode(Kind::Customer, self.customer_id),
            self.customer_external_id.clone(),
            ids::encode(Kind::CreditSystem, self.credit_system_id),
            self.credit_system_key.clone(),
            ids::encode(Kind::Wallet, self.wallet_id),
            self.entry_type.clone(),
            self.amount.normalize().to_string(),
            self.balance_after.normalize().to_string(),
            opt(&self.feature),
            self.quantity
                .map(|q| q.normalize().to_string())
                .unwrap_or_default(),
            opt(&self.event_ref),
            opt(&self.user_ref),
            id(Kind::Grant, self.grant_id),
            opt(&self.grant_category),
            id(Kind::Order, self.order_id),
            opt(&self.payment_id),
            opt(&self.description),
            id(Kind::Customer, self.counterparty_id),
            opt(&self.counterparty_external_id),
        ]
    }
}

/// One CSV line (RFC 4180): fields with a comma, quote, CR or LF are quoted,
/// quotes doubled; CRLF at the end.
pub fn csv_line<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let f = f.as_ref();
        if f.contains([',', '"', '\r', '\n']) {
            line.push('"');
            line.push_str(&f.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(f);
        }
    }
    line.push_str("\r\n");
    line
}

/// The customer `cc` on the other side of a transfer entry `e`: a
/// TRANSFER_IN names its TRANSFER_OUT (`refund_of_entry_id`), so an OUT
/// finds its IN by that link and an IN follows it (both indexed).
const COUNTERPARTY_JOINS: &str = "\
    LEFT JOIN ledger_entry t_in ON e.entry_type = 'TRANSFER_OUT' AND t_in.tenant_id = e.tenant_id \
      AND t_in.refund_of_entry_id = e.id AND t_in.entry_type = 'TRANSFER_IN' \
    LEFT JOIN ledger_entry t_out ON e.entry_type = 'TRANSFER_IN' AND t_out.tenant_id = e.tenant_id \
      AND t_out.id = e.refund_of_entry_id \
    LEFT JOIN wallet cw ON cw.id = COALESCE(t_in.wallet_id, t_out.wallet_id) \
    LEFT JOIN customer cc ON cc.id = cw.customer_id";

/// At most `limit` entries after `after` (by id, the creation order).
pub async fn page(
    db: &Db,
    tenant_id: Uuid,
    filter: &ExportFilter,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<ExportRow>, DbErr> {
    let mut values: Vec<Value> = vec![tenant_id.into()];
    let mut conditions = filter.scope.sql(tenant_id, &mut values);
    if let Some(from) = filter.from {
        conditions.push_str(" AND e.created_at >= ?");
        values.push(from.into());
    }
    if let Some(to) = filter.to {
        conditions.push_str(" AND e.created_at < ?");
        values.push(to.into());
    }
    if let Some(types) = &filter.types {
        if types.is_empty() {
            return Ok(Vec::new());
        }
        conditions.push_str(&format!(
            " AND e.entry_type IN ({})",
            vec!["?"; types.len()].join(", ")
        ));
        values.extend(types.iter().map(|t| Value::from(t.as_str())));
    }
    if let Some(after) = after {
        conditions.push_str(" AND e.id > ?");
        values.push(after.into());
    }
    values.push((limit.min(PAGE_ROWS) as i64).into());
    let sql = format!(
        "SELECT e.id AS entry_id, e.created_at AS created_at, c.id AS customer_id, \
           c.external_id AS customer_external_id, cs.id AS credit_system_id, \
           cs.key AS credit_system_key, e.wallet_id AS wallet_id, e.entry_type AS entry_type, \
           e.amount_micros AS amount, e.balance_after_micros AS balance_after, e.feature AS feature, \
           e.quantity_micros AS quantity, e.event_ref AS event_ref, e.user_ref AS user_ref, \
           e.grant_id AS grant_id, g.category AS grant_category, \
           o.id AS order_id, o.payment_id AS payment_id, e.description AS description, \
           cc.id AS counterparty_id, cc.external_id AS counterparty_external_id \
         FROM ledger_entry e \
           JOIN wallet w ON w.id = e.wallet_id \
           JOIN customer c ON c.id = w.customer_id \
           JOIN credit_system cs ON cs.id = w.credit_system_id \
           LEFT JOIN credit_grant g ON g.id = e.grant_id \
           LEFT JOIN top_up_order o ON o.grant_id = e.grant_id AND e.grant_id IS NOT NULL \
           {COUNTERPARTY_JOINS} \
         WHERE e.tenant_id = ?{conditions} \
         ORDER BY e.id LIMIT ?"
    );
    let conn = db.reader();
    let rows = conn
        .query_all_raw(statement(conn.get_database_backend(), &sql, values))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(ExportRow {
            entry_id: r.try_get("", "entry_id")?,
            created_at: r.try_get("", "created_at")?,
            customer_id: r.try_get("", "customer_id")?,
            customer_external_id: r.try_get("", "customer_external_id")?,
            credit_system_id: r.try_get("", "credit_system_id")?,
            credit_system_key: r.try_get("", "credit_system_key")?,
            wallet_id: r.try_get("", "wallet_id")?,
            entry_type: r.try_get("", "entry_type")?,
            amount: from_micros(r.try_get("", "amount")?),
            balance_after: from_micros(r.try_get("", "balance_after")?),
            feature: r.try_get("", "feature")?,
            quantity: r.try_get::<Option<i64>>("", "quantity")?.map(from_micros),
            event_ref: r.try_get("", "event_ref")?,
            user_ref: r.try_get("", "user_ref")?,
            grant_id: r.try_get("", "grant_id")?,
            grant_category: r.try_get("", "grant_category")?,
            order_id: r.try_get("", "order_id")?,
            payment_id: r.try_get("", "payment_id")?,
            description: r.try_get("", "description")?,
            counterparty_id: r.try_get("", "counterparty_id")?,
            counterparty_external_id: r.try_get("", "counterparty_external_id")?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_quote_what_rfc_4180_says() {
        assert_eq!(csv_line(&["a", "b"]), "a,b\r\n");
        assert_eq!(
            csv_line(&["a,b", "say \"hi\"", "x\ny", ""]),
            "\"a,b\",\"say \"\"hi\"\"\",\"x\ny\",\r\n"
        );
    }
}
