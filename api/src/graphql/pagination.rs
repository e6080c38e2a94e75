//! Relay connections over the service's keyset pages. Cursors are opaque
//! (base64 of a versioned position); `first` is 1..=200.

use async_graphql::{
    OutputType,
    connection::{Connection, CursorType, Edge},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use service::pagination::{Page, PageRequest};
use uuid::Uuid;

use super::error::{ApiError, ApiResult};

pub type Conn<N> = Connection<Cursor, N>;

/// An item's position, encoded ([`encode_cursor`]) only when a query asks
/// for `cursor` or `pageInfo`'s cursors: most list reads never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub Uuid);

impl CursorType for Cursor {
    type Error = &'static str;

    fn decode_cursor(s: &str) -> Result<Self, &'static str> {
        decode_cursor(s)
            .map(Cursor)
            .map_err(|_| "not a cursor this API returned")
    }

    fn encode_cursor(&self) -> String {
        encode_cursor(self.0)
    }
}

pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{}", id.simple()))
}

pub fn decode_cursor(cursor: &str) -> ApiResult<Uuid> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|s| s.strip_prefix("v1:").and_then(|h| Uuid::try_parse(h).ok()))
        .ok_or_else(|| ApiError::invalid("after", "not a cursor this API returned"))
}

/// Parses `first` / `after` into a bounded page request.
pub fn page_request(first: Option<i32>, after: Option<String>) -> ApiResult<PageRequest> {
    let after = after.as_deref().map(decode_cursor).transpose()?;
    Ok(PageRequest::new(first.map(i64::from), after)?)
}

/// Builds a connection from a page; `cursor_of` gives each item's position.
pub fn connection<T, N: OutputType>(
    page: Page<T>,
    cursor_of: impl Fn(&T) -> Uuid,
    mut node: impl FnMut(T) -> N,
) -> Conn<N> {
    let mut conn = Connection::new(false, page.has_next_page);
    conn.edges.extend(
        page.items
            .into_iter()
            .map(|item| Edge::new(Cursor(cursor_of(&item)), node(item))),
    );
    conn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        assert_eq!(
            Cursor::decode_cursor(&Cursor(id).encode_cursor()).unwrap(),
            Cursor(id)
        );
        assert!(decode_cursor("nope").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("v2:x")).is_err());
    }

    #[test]
    fn first_over_the_bound_is_a_validation_error() {
        assert!(page_request(Some(201), None).is_err());
        assert_eq!(page_request(Some(200), None).unwrap().first, 200);
    }
}
