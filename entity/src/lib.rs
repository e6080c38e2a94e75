//! SeaORM entities: one module per table, nothing else.
//!
//! Every table carries `tenant_id` (the `tenant` table is the root) and every
//! unique index leads with it. Amounts are `*_micros`: integers of 10⁻⁶
//! credit. Rules about these rows live in `service`.

pub mod allowance_period;
pub mod api_key;
pub mod audit_log;
pub mod credit_grant;
pub mod credit_hold;
pub mod credit_system;
pub mod customer;
pub mod email_attempt;
pub mod email_delivery;
pub mod entitlement;
pub mod entry_split;
pub mod feature;
pub mod hold_split;
pub mod idempotency_record;
pub mod invoice;
pub mod job_run;
pub mod job_tick;
pub mod ledger_entry;
pub mod outbox_event;
pub mod payment_event;
pub mod payment_intake;
pub mod plan;
pub mod plan_credit;
pub mod product;
pub mod secrets_key_check;
pub mod subscription;
pub mod tenant;
pub mod top_up_order;
pub mod top_up_refund;
pub mod wallet;
pub mod wallet_check;
pub mod webhook_attempt;
pub mod webhook_delivery;
pub mod webhook_endpoint;
