//! Invoices paid with credits: apply (hold), finalize (capture), void
//! (release). The rules live in `service::ledger::invoices`.

use async_graphql::{Context, Enum, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use service::{
    api_keys::Role,
    ledger::invoices::{self, ApplyInput},
};

use super::{
    context::{RoleGuard, app},
    customers::{self, Customer},
    error::ApiResult,
    ids::{self, Kind},
    pagination::{self, Conn},
    refs::CustomerRefInput,
    scalars::ExactDecimal,
};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "service::ledger::invoices::InvoiceStatus")]
pub enum InvoiceStatus {
    /// Credits are held for it.
    Pending,
    /// The held credits were spent (INVOICE entries).
    Finalized,
    /// The held credits went back to the wallets.
    Voided,
}

/// An invoice of your billing system, as far as credits pay it.
pub struct Invoice(invoices::Invoice);

#[Object]
impl Invoice {
    async fn id(&self) -> ID {
        ids::encode(Kind::Invoice, self.0.id)
    }
    /// The invoice's id in your billing system.
    async fn external_id(&self) -> &str {
        &self.0.external_id
    }
    async fn customer(&self, ctx: &Context<'_>) -> ApiResult<Option<Customer>> {
        customers::customer(ctx, self.0.customer_id).await
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn subtotal(&self) -> ExactDecimal {
        ExactDecimal(self.0.subtotal)
    }
    /// Paid with credits (held until finalized).
    async fn credit_applied(&self) -> ExactDecimal {
        ExactDecimal(self.0.credit_applied)
    }
    /// `subtotal − creditApplied`: what the customer still pays.
    async fn total_due(&self) -> ExactDecimal {
        ExactDecimal(self.0.total_due)
    }
    /// Why less than the subtotal was applied (no credits in the
    /// currency, not enough of them…); null when credits covered it all.
    async fn note(&self) -> Option<&str> {
        self.0.note.as_deref()
    }
    async fn status(&self) -> InvoiceStatus {
        self.0.status.into()
    }
    /// Finalize before this, or the held credits go back (90 days).
    async fn holds_until(&self) -> DateTime<Utc> {
        self.0.holds_until
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn settled_at(&self) -> Option<DateTime<Utc>> {
        self.0.settled_at
    }
}

/// The invoice credits should pay.
#[derive(InputObject)]
pub struct InvoiceInput {
    /// Its id in your billing system; one application per id.
    external_id: String,
    /// ISO 4217; only MONETARY credits in this currency pay.
    currency: String,
    /// Greater than 0, at most the currency's minor units of decimals.
    subtotal: ExactDecimal,
}

/// Which invoices to list; every condition given must hold.
#[derive(InputObject, Default)]
pub struct InvoiceFilter {
    customer: Option<CustomerRefInput>,
    status: Option<InvoiceStatus>,
    /// Invoices credits were applied to at or after this instant…
    from: Option<DateTime<Utc>>,
    /// …and before this one.
    to: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct InvoiceQuery;

#[Object]
impl InvoiceQuery {
    /// An invoice credits were applied to, by its id in your billing system.
    async fn invoice(&self, ctx: &Context<'_>, external_id: String) -> ApiResult<Option<Invoice>> {
        let (p, app) = app(ctx)?;
        Ok(invoices::get(&app.db, p.tenant_id, &external_id)
            .await?
            .map(Invoice))
    }

    /// Invoices credits were applied to, newest first (API keys only,
    /// like `invoice`).
    #[graphql(complexity = "crate::graphql::limits::list_cost(first, child_complexity)")]
    async fn invoices(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<InvoiceFilter>,
    ) -> ApiResult<Conn<Invoice>> {
        let (p, app) = app(ctx)?;
        let page = pagination::page_request(first, after)?;
        let filter = filter.unwrap_or_default();
        let filter = invoices::InvoiceFilter {
            customer: filter
                .customer
                .map(|c| c.parse("filter.customer"))
                .transpose()?,
            status: filter.status.map(Into::into),
            from: filter.from,
            to: filter.to,
        };
        let found = invoices::list(&app.db, p.tenant_id, &filter, page).await?;
        Ok(pagination::connection(found, |i| i.id, Invoice))
    }
}

#[derive(Default)]
pub struct InvoiceMutation;

#[Object]
impl InvoiceMutation {
    /// Applies the customer's MONETARY credits in the invoice's currency
    /// (soonest-expiring first) up to its subtotal and holds them until
    /// `finalizeInvoice` or `voidInvoice`. A currency without credits
    /// applies nothing and `note` says why.
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn apply_credits_to_invoice(
        &self,
        ctx: &Context<'_>,
        customer: CustomerRefInput,
        invoice: InvoiceInput,
        idempotency_key: String,
    ) -> ApiResult<Invoice> {
        let (p, app) = app(ctx)?;
        let input = ApplyInput {
            customer: customer.parse("customer")?,
            external_id: invoice.external_id,
            currency: invoice.currency,
            subtotal: invoice.subtotal.0,
            idempotency_key,
        };
        Ok(Invoice(
            invoices::apply_credits(&app.db, app.clock(), p.tenant_id, &input).await?,
        ))
    }

    /// Spends the credits held for the invoice (INVOICE entries).
    /// Idempotent; a voided invoice is `CONFLICT`.
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn finalize_invoice(&self, ctx: &Context<'_>, external_id: String) -> ApiResult<Invoice> {
        let (p, app) = app(ctx)?;
        Ok(Invoice(
            invoices::finalize(&app.db, app.clock(), p.tenant_id, &external_id).await?,
        ))
    }

    /// Returns the credits held for the invoice. Idempotent; a finalized
    /// invoice is `CONFLICT`.
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn void_invoice(&self, ctx: &Context<'_>, external_id: String) -> ApiResult<Invoice> {
        let (p, app) = app(ctx)?;
        Ok(Invoice(
            invoices::void(&app.db, app.clock(), p.tenant_id, &external_id).await?,
        ))
    }
}
