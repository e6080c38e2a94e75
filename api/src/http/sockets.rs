//! GraphQL over WebSocket (`/graphql/ws`; `graphql-transport-ws`, and the
//! older `graphql-ws` of subscriptions-transport-ws), with the bounds and
//! the revocation that async-graphql's socket does not have:
//!
//! - **`connection_init` within [`INIT_WITHIN`]**, or the socket is closed
//!   `4408 Connection initialisation timeout`. An invalid credential at
//!   init closes it `4403 Forbidden`.
//! - **Credentials stay valid for the socket's life.** Every open socket is
//!   registered with its credential ([`Sockets`]). When a key is revoked or
//!   a tenant rotates its customer-token secret, the service announces it
//!   ([`service::revocations`]: in-process at once, and `NOTIFY` to every
//!   PostgreSQL replica); the watcher re-checks every open socket's
//!   credential then and closes those that fail `4401 Unauthorized`, with
//!   the subscriptions they were running. A customer token is closed the
//!   same way when it expires (checked every [`TICK`] against the clock).
//!   Every [`RECHECK_EVERY`] the watcher re-checks anyway, in case an
//!   announcement was lost. Each operation a socket starts is checked once
//!   more when it starts ([`crate::graphql::socket_auth`]).
//! - **Bounded**: at most [`SUBSCRIPTIONS_PER_SOCKET`] operations running
//!   on a socket (one more is answered with an `error` message, code
//!   `TOO_MANY_SUBSCRIPTIONS`, and the socket stays open) and
//!   [`SOCKETS_PER_CREDENTIAL`] sockets per credential in this process
//!   (the next is closed `4429 Too many sockets for this credential`). A
//!   second `subscribe` with an id already running closes the socket
//!   `4409 Subscriber for <id> already exists`, as graphql-ws says.
//!
//! - **Rate limits** ([`super::throttle`]): each operation a socket starts
//!   takes a request from its credential's bucket, as an HTTP request does
//!   (over it: an `error` message, code `RATE_LIMITED`, the socket stays
//!   open); a failed authentication at `connection_init` counts against the
//!   client's address, and an address over its budget is closed `4429`.
//!
//! A database outage does not close sockets: a credential is closed only
//! when it is known to be invalid.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::{Duration, Instant},
};

use async_graphql::http::{ClientMessage, WebSocket, WebSocketProtocols, WsMessage};
use axum::extract::ws::{CloseFrame, Message, WebSocket as Socket};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt, future, stream};
use service::{
    Clock, Db,
    api_keys::{self, Credential, Principal},
    revocations,
};
use tokio::sync::{Notify, mpsc, watch};

use super::{AppState, authenticate_credential, throttle::Throttle};
use crate::graphql::loaders;

/// How long a socket may stay open without a `connection_init`.
pub const INIT_WITHIN: Duration = Duration::from_secs(5);
/// Operations running at once on one socket.
pub const SUBSCRIPTIONS_PER_SOCKET: usize = 32;
/// Open sockets per credential (API key or customer token) per process.
pub const SOCKETS_PER_CREDENTIAL: usize = 16;
/// How often every open socket's credential is re-checked without being
/// told of a change.
pub const RECHECK_EVERY: Duration = Duration::from_secs(30);
/// How often expiries are looked for (no database work).
pub const TICK: Duration = Duration::from_secs(1);
/// Credentials re-checked side by side.
const RECHECKS_IN_FLIGHT: usize = 8;
/// Messages the server itself queues for a socket (errors, a close)
/// before it gives up on a client that does not read them.
const OWN_MESSAGES: usize = 64;

/// graphql-ws close codes.
pub mod close {
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const DUPLICATE_ID: u16 = 4409;
    pub const TOO_MANY: u16 = 4429;
}

/// Why the server closes a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Closing {
    code: u16,
    reason: String,
}

impl Closing {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    fn unauthorized(reason: &str) -> Self {
        Self::new(close::UNAUTHORIZED, format!("Unauthorized: {reason}"))
    }
}

/// The open sockets of this process, by credential (cheap to clone).
#[derive(Clone, Default)]
pub struct Sockets(Arc<Registry>);

#[derive(Default)]
struct Registry {
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    sockets: HashMap<u64, OpenSocket>,
}

struct OpenSocket {
    credential: Arc<str>,
    expires_at: Option<DateTime<Utc>>,
    close: watch::Sender<Option<Closing>>,
}

/// A socket's place in [`Sockets`]; leaves it when dropped.
struct Registration {
    sockets: Weak<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(registry) = self.sockets.upgrade() {
            lock(&registry.open).sockets.remove(&self.id);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sockets {
    fn register(
        &self,
        credential: &str,
        principal: &Principal,
        close: watch::Sender<Option<Closing>>,
    ) -> Result<Registration, Closing> {
        let mut open = lock(&self.0.open);
        let same = open
            .sockets
            .values()
            .filter(|s| &*s.credential == credential)
            .count();
        if same >= SOCKETS_PER_CREDENTIAL {
            return Err(Closing::new(
                close::TOO_MANY,
                "Too many sockets for this credential",
            ));
        }
        let expires_at = match &principal.credential {
            Credential::CustomerToken(scope) => Some(scope.expires_at),
            Credential::ApiKey(_) => None,
        };
        open.next_id += 1;
        let id = open.next_id;
        open.sockets.insert(
            id,
            OpenSocket {
                credential: credential.into(),
                expires_at,
                close,
            },
        );
        Ok(Registration {
            sockets: Arc::downgrade(&self.0),
            id,
        })
    }

    /// Closes every socket `pick` chooses.
    fn close_where(&self, pick: impl Fn(&OpenSocket) -> Option<Closing>) {
        for socket in lock(&self.0.open).sockets.values() {
            if let Some(closing) = pick(socket) {
                socket.close.send_replace(Some(closing));
            }
        }
    }

    /// Runs the watcher until the last clone of `self` is dropped:
    /// closes expired tokens every [`TICK`], and re-checks every socket's
    /// credential when a change is announced and every [`RECHECK_EVERY`].
    pub fn watch(&self, db: Db, clock: Arc<dyn Clock>) {
        let registry = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let announced = Arc::new(Notify::new());
            let listener = tokio::spawn(service::listen::postgres(
                db.clone(),
                revocations::CHANNEL,
                announced.clone(),
            ));
            let mut in_process = revocations::subscribe();
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_recheck = Instant::now();
            loop {
                let Some(registry) = registry.upgrade() else {
                    break;
                };
                let recheck = tokio::select! {
                    _ = tick.tick() => last_recheck.elapsed() >= RECHECK_EVERY,
                    () = announced.notified() => true,
                    changed = in_process.changed() => changed.is_ok(),
                };
                let sockets = Sockets(registry);
                let now = clock.now();
                sockets.close_where(|s| {
                    s.expires_at
                        .filter(|at| *at <= now)
                        .map(|_| Closing::unauthorized("the token has expired"))
                });
                if recheck {
                    last_recheck = Instant::now();
                    sockets.recheck(&db, clock.as_ref()).await;
                }
            }
            listener.abort();
        });
    }

    /// Authenticates every open socket's credential again (each distinct
    /// one once) and closes the sockets of those no longer valid.
    async fn recheck(&self, db: &Db, clock: &dyn Clock) {
        let credentials: HashSet<Arc<str>> = lock(&self.0.open)
            .sockets
            .values()
            .map(|s| s.credential.clone())
            .collect();
        if credentials.is_empty() {
            return;
        }
        let invalid: HashSet<Arc<str>> = stream::iter(credentials)
            .map(|credential| async move {
                let outcome = authenticate_credential(db, clock, &credential).await;
                (credential, outcome)
            })
            .buffer_unordered(RECHECKS_IN_FLIGHT)
            .filter_map(|(credential, outcome)| {
                future::ready(match outcome {
                    Err(api_keys::Error::Unauthenticated) => Some(credential),
                    // Valid, or not known now (the database is away):
                    // left open.
                    _ => None,
                })
            })
            .collect()
            .await;
        if invalid.is_empty() {
            return;
        }
        tracing::info!(
            credentials = invalid.len(),
            "closing sockets whose credential is no longer valid"
        );
        self.close_where(|s| {
            invalid
                .contains(&s.credential)
                .then(|| Closing::unauthorized("the credential was revoked or rotated"))
        });
    }
}

/// The protocol a client asked for in `Sec-WebSocket-Protocol`.
pub fn protocol(headers: &axum::http::HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?
        .split(',')
        .find_map(|p| p.trim().parse().ok())
}

/// What a socket's parts share: the operations running, and why the
/// server refused its `connection_init`.
#[derive(Default)]
struct Shared {
    running: HashSet<String>,
    refusal: Option<Closing>,
    registration: Option<Registration>,
    /// Who the socket is, once initialised: each operation it starts takes
    /// a request from this credential's rate limit.
    principal: Option<Principal>,
}

/// Serves one upgraded socket until either side closes it.
/// `from_header`: the credential of the upgrade request, if it had one;
/// `client`: the client's address, for failed-authentication throttling.
pub async fn serve(
    socket: Socket,
    protocol: WebSocketProtocols,
    state: AppState,
    from_header: Option<(Principal, String)>,
    client: Option<IpAddr>,
) {
    let (mut sink, incoming) = socket.split();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let (own_tx, mut own_rx) = mpsc::channel::<Result<String, Closing>>(OWN_MESSAGES);
    let (close_tx, mut close_rx) = watch::channel::<Option<Closing>>(None);

    // Client → server: parsed once here, bounded, then handed on.
    let input = {
        let shared = shared.clone();
        let throttle = state.throttle.clone();
        incoming
            .take_while(|m| future::ready(m.is_ok()))
            .filter_map(move |m| {
                let data = match m {
                    Ok(Message::Text(t)) => t.as_bytes().to_vec(),
                    Ok(Message::Binary(b)) => b.to_vec(),
                    _ => return future::ready(None),
                };
                let message = ClientMessage::from_bytes(&data);
                if let Ok(m) = &message
                    && !admit(m, protocol, &shared, &throttle, &own_tx)
                {
                    return future::ready(None);
                }
                future::ready(Some(message))
            })
    };

    let schema = state.schemas.socket.clone();
    let on_init = {
        let shared = shared.clone();
        move |payload: serde_json::Value| async move {
            let refuse = |closing: Closing| {
                let message = closing.reason.clone();
                lock(&shared).refusal = Some(closing);
                async_graphql::Error::new(message)
            };
            let (principal, credential) = match from_header {
                Some(p) => p,
                None => {
                    let credential = init_credential(&payload)
                        .ok_or_else(|| refuse(Closing::new(close::FORBIDDEN, "Forbidden")))?;
                    // An address over its failed-authentication budget is
                    // refused before its credential is looked at.
                    if state.throttle.check_client(client).is_err() {
                        return Err(refuse(Closing::new(
                            close::TOO_MANY,
                            "Too many failed authentications",
                        )));
                    }
                    let authenticated =
                        authenticate_credential(&state.db, state.clock.as_ref(), &credential).await;
                    let principal = match authenticated {
                        Ok(p) => p,
                        Err(e) => {
                            if matches!(e, api_keys::Error::Unauthenticated) {
                                let _ = state.throttle.record_failure(client);
                            }
                            return Err(refuse(Closing::new(close::FORBIDDEN, "Forbidden")));
                        }
                    };
                    (principal, credential)
                }
            };
            let registration = state
                .sockets
                .register(&credential, &principal, close_tx)
                .map_err(refuse)?;
            {
                let mut shared = lock(&shared);
                shared.registration = Some(registration);
                shared.principal = Some(principal.clone());
            }
            let mut data = async_graphql::Data::default();
            data.insert(loaders::loaders(
                state.db.clone(),
                principal.tenant_id,
                state.clock.now(),
            ));
            data.insert(principal);
            data.insert(crate::graphql::socket_auth::SocketCredential(credential));
            Ok(data)
        }
    };

    let graphql =
        WebSocket::from_message_stream(schema, input, protocol).on_connection_init(on_init);
    futures_util::pin_mut!(graphql);
    let init_deadline = tokio::time::sleep(INIT_WITHIN);
    futures_util::pin_mut!(init_deadline);
    let mut initialised = false;
    let mut registered = true;

    let closing = loop {
        let out = tokio::select! {
            biased;
            changed = close_rx.changed(), if registered => match changed {
                Ok(()) => match close_rx.borrow().clone() {
                    Some(closing) => break Some(closing),
                    None => continue,
                },
                // Never registered (the handshake failed), or gone.
                Err(_) => {
                    registered = false;
                    continue;
                }
            },
            Some(own) = own_rx.recv() => match own {
                Ok(text) => Message::Text(text.into()),
                Err(closing) => break Some(closing),
            },
            () = &mut init_deadline, if !initialised => {
                break Some(Closing::new(close::INIT_TIMEOUT, "Connection initialisation timeout"));
            }
            message = graphql.next() => match message {
                None => break None,
                Some(WsMessage::Text(text)) => {
                    if text.starts_with(r#"{"type":"connection_ack""#) {
                        initialised = true;
                    } else if text.starts_with(r#"{"type":"complete""#)
                        && let Ok(ClientId { id }) = serde_json::from_str::<ClientId>(&text)
                    {
                        lock(&shared).running.remove(&id);
                    }
                    Message::Text(text.into())
                }
                Some(WsMessage::Close(code, reason)) => {
                    let refused = lock(&shared).refusal.take();
                    break Some(refused.unwrap_or(match code {
                        // A subscribe before the handshake.
                        1011 => Closing::unauthorized("send connection_init first"),
                        _ => Closing::new(code, reason),
                    }));
                }
            },
        };
        if sink.send(out).await.is_err() {
            break None;
        }
    };
    if let Some(Closing { code, reason }) = closing {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }
    let _ = sink.close().await;
}

#[derive(serde::Deserialize)]
struct ClientId {
    id: String,
}

/// Whether a client message goes on to the GraphQL socket: a `subscribe`
/// over the bounds (operations running, the credential's rate limit) is
/// answered with an error (and dropped); one reusing a running id closes
/// the socket.
fn admit(
    message: &ClientMessage,
    protocol: WebSocketProtocols,
    shared: &Mutex<Shared>,
    throttle: &Throttle,
    own: &mpsc::Sender<Result<String, Closing>>,
) -> bool {
    let mut shared = lock(shared);
    let reply = |text: String| {
        if own.try_send(Ok(text)).is_err() {
            // A client that floods without reading its replies.
            let _ = own.try_send(Err(Closing::new(close::TOO_MANY, "Too many messages")));
        }
    };
    match message {
        ClientMessage::Start { id, .. } => {
            if let Some(principal) = &shared.principal
                && let Err(limited) = throttle.check(principal)
            {
                let error = serde_json::json!({
                    "message": limited.message(),
                    "extensions": {
                        "code": "RATE_LIMITED",
                        "retryable": true,
                        "policy": limited.policy.name(),
                        "retryAfterSecs": limited.retry_after_secs(),
                    },
                });
                reply(error_message(id, error, protocol));
                return false;
            }
            if shared.running.contains(id) {
                let _ = own.try_send(Err(Closing::new(
                    close::DUPLICATE_ID,
                    format!("Subscriber for {} already exists", cut(id)),
                )));
                return false;
            }
            if shared.running.len() >= SUBSCRIPTIONS_PER_SOCKET {
                let error = serde_json::json!({
                    "message": format!(
                        "this socket already runs {SUBSCRIPTIONS_PER_SOCKET} operations; complete one first"
                    ),
                    "extensions": { "code": "TOO_MANY_SUBSCRIPTIONS", "limit": SUBSCRIPTIONS_PER_SOCKET },
                });
                reply(error_message(id, error, protocol));
                return false;
            }
            shared.running.insert(id.clone());
        }
        ClientMessage::Stop { id } => {
            shared.running.remove(id);
        }
        _ => {}
    }
    true
}

/// An id as far as it is worth echoing.
fn cut(id: &str) -> &str {
    match id.char_indices().nth(64) {
        Some((at, _)) => &id[..at],
        None => id,
    }
}

/// An `error` message for operation `id`.
fn error_message(id: &str, error: serde_json::Value, protocol: WebSocketProtocols) -> String {
    let payload = match protocol {
        // graphql-transport-ws: an array of GraphQL errors.
        WebSocketProtocols::GraphQLWS => serde_json::json!([error]),
        WebSocketProtocols::SubscriptionsTransportWS => error,
    };
    serde_json::json!({ "type": "error", "id": id, "payload": payload }).to_string()
}

/// `{"Authorization": "Bearer …"}` from a `connection_init` payload.
fn init_credential(payload: &serde_json::Value) -> Option<String> {
    payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(|v| v.as_str())
        .and_then(super::bearer_value)
        .map(str::to_owned)
}
