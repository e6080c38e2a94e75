//! A WebSocket's credential is checked again for every operation it
//! starts, not only at `connection_init`: a key revoked, a customer token
//! expired or signed with a rotated secret since starts nothing more (the
//! operation is refused `UNAUTHENTICATED`). Sockets whose credential stops
//! being valid are also closed, running subscriptions and all
//! ([`crate::http::sockets`]); this check covers the moment between the
//! change and the close. HTTP requests authenticate each time anyway.

use std::sync::Arc;

use async_graphql::{
    Request, ServerError, ServerResult,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest},
};
use service::{Code, DomainError};

use super::context::AppContext;

/// The credential a socket presented at `connection_init`.
pub struct SocketCredential(pub String);

pub struct SocketReauth;

impl ExtensionFactory for SocketReauth {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(SocketReauth)
    }
}

#[async_trait::async_trait]
impl Extension for SocketReauth {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let (Some(credential), Some(app)) = (
            ctx.data_opt::<SocketCredential>(),
            ctx.data_opt::<AppContext>(),
        ) {
            let now =
                crate::http::authenticate_credential(&app.db, app.clock.as_ref(), &credential.0)
                    .await;
            if let Err(e) = now {
                let (code, message) = if e.code() == Code::Internal {
                    ("UNAVAILABLE", "the database is unavailable; retry shortly")
                } else {
                    (
                        "UNAUTHENTICATED",
                        "this connection's credential is no longer valid (revoked, expired or rotated); reconnect with a valid one",
                    )
                };
                let mut err = ServerError::new(message, None);
                let ext = err.extensions.get_or_insert_with(Default::default);
                ext.set("code", code);
                ext.set("retryable", code == "UNAVAILABLE");
                return Err(err);
            }
        }
        next.run(ctx, request).await
    }
}
