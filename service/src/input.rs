//! The input rules: one set for every string, time and JSON value a caller
//! sends, checked before anything reaches a database, so SQLite and
//! PostgreSQL see the same values and answer the same way. A refused input
//! is an [`Invalid`] (`VALIDATION`, `extensions.field`) and nothing is
//! written; messages say what the rule is and never repeat the value.
//!
//! | kind | inputs | rule |
//! |---|---|---|
//! | identifier ([`key`]) | `externalId` (customer, invoice), `idempotencyKey`, `feature` / `eventRef` / `userRef` (usage, holds, entry filters), `gateway`, `paymentId`, and every lookup by external id or key (`CustomerRef`, `CreditSystemRef`, `CatalogRef`, `customer(externalId:)`, `invoice(externalId:)`, CSV `customer=` / `creditSystem=`) | trimmed; 1–[`KEY_LEN_MAX`] (255) characters; no control characters |
//! | machine key | `key` of credit systems, products, plans, features | 1–64 of `a-z 0-9 _ . -`, starting with a letter or digit |
//! | name ([`name`]) | customer `name` (200); product, plan, feature, credit system, tenant `name` (100); API key `name` (0–100); `unit`, `unitSingular`, `unitPlural` (50) | trimmed; 1–max characters; no control characters |
//! | free text ([`text`], [`reason`]) | `description` (credit system, product, webhook endpoint, usage, hold), `note` (allocation): 0–[`TEXT_LEN_MAX`]; `reason` (grant, void, adjust, refund, failed payment): trimmed, 1–[`TEXT_LEN_MAX`] | at most 1,000 characters; newlines and tabs allowed; NUL refused |
//! | search ([`search`]) | `customers(search:)` | trimmed; at most [`SEARCH_LEN_MAX`] (100) characters; no control characters |
//! | email ([`email`]) | customer `email`, `adminEmail` | at most [`EMAIL_LEN_MAX`] (254) characters, `local@domain.tld`, no spaces or control characters |
//! | others | webhook `url` (≤ 2,000, http(s)), `events` (≤ 50 known names), `currency` (3 letters), `timeZone` (IANA, ≤ 64), `dimension` (≤ 64 of `A-Za-z0-9_-`), `expiration` (ISO 8601 `PnYnMnWnD`, ≤ 100 years), delivery `status` (a listed value) | checked where parsed |
//! | time ([`time`]) | every `DateTime` input: `effectiveAt`, `expiresAt`, `startAt`, `at`, `paidAt`, `balanceAt(at:)`, `from` / `to` of filters and reports | [`TIME_MIN`] (1970-01-01T00:00:00Z) to [`TIME_MAX`] (9999-12-31T23:59:59.999999Z) **in UTC**, truncated to microseconds; `subscribe.startAt` leaves a year: at most 9998-12-31T23:59:59.999999Z |
//! | JSON ([`json_object`]) | customer and grant `metadata`: ≤ [`METADATA_BYTES_MAX`] (16 KiB); usage and hold `dimensions`: ≤ [`DIMENSIONS_BYTES_MAX`] (4 KiB) | a JSON object; size counted as compact JSON; nesting at most [`JSON_DEPTH_MAX`] (8) levels; no NUL in any string or key |
//!
//! Lengths are in characters (Unicode scalar values). A control character
//! is one of Unicode category Cc (U+0000–U+001F, U+007F–U+009F).
//!
//! **Why the time range.** PostgreSQL stores `timestamptz`; SQLite has no
//! time type and stores RFC 3339 text (`2026-01-31T12:00:00.5+00:00`),
//! which the engine's SQL compares as text. Within years 0000–9999 with a
//! `+00:00` offset, text order is time order (see the tests below); a year
//! past 9999 is written `+10000-…` and sorts before every other year, so
//! SQLite would call such a grant expired while Rust — and PostgreSQL —
//! call it live. Keeping every stored time inside the range keeps the two
//! databases (and the Rust rules) in agreement.

use std::io;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value as Json;

use crate::{clock::truncate_micros, error::Invalid};

/// Identifiers: external ids, idempotency keys, refs.
pub const KEY_LEN_MAX: usize = 255;
/// Descriptions, reasons, notes.
pub const TEXT_LEN_MAX: usize = 1000;
/// `customers(search:)`.
pub const SEARCH_LEN_MAX: usize = 100;
/// An email address (RFC 5321's path limit).
pub const EMAIL_LEN_MAX: usize = 254;
/// Customer and grant `metadata`, as compact JSON.
pub const METADATA_BYTES_MAX: usize = 16 * 1024;
/// Usage and hold `dimensions`, as compact JSON.
pub const DIMENSIONS_BYTES_MAX: usize = 4 * 1024;
/// Nesting of JSON inputs: `{"a": {"b": 1}}` is 2 levels.
pub const JSON_DEPTH_MAX: usize = 8;

/// The earliest time any input may name.
pub const TIME_MIN: DateTime<Utc> = DateTime::UNIX_EPOCH;
/// The latest time any input may name (and any stored time may be).
pub const TIME_MAX: DateTime<Utc> = match NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(d) => match d.and_hms_micro_opt(23, 59, 59, 999_999) {
        Some(t) => t.and_utc(),
        None => panic!("a valid time"),
    },
    None => panic!("a valid date"),
};

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// An identifier: trimmed, 1–255 characters, no control characters.
pub fn key(field: &str, value: &str) -> Result<String, Invalid> {
    bounded_name(field, value, KEY_LEN_MAX)
}

/// A short human name: trimmed, 1–`max` characters, no control characters.
pub fn name(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    bounded_name(field, value, max)
}

fn bounded_name(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    // Before trimming: a trailing newline is refused, not silently cut.
    if has_control(value) {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(Invalid::new(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// Free text (as written, not trimmed): at most `max` characters, no NUL;
/// newlines and tabs are fine.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    if value.chars().count() > max {
        return Err(Invalid::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.contains('\0') {
        return Err(Invalid::new(field, "must not contain NUL characters"));
    }
    Ok(value.to_owned())
}

/// A required reason: trimmed free text, 1–1,000 characters.
pub fn reason(field: &str, value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Invalid::new(
            field,
            format!("must be 1 to {TEXT_LEN_MAX} characters"),
        ));
    }
    text(field, value, TEXT_LEN_MAX)
}

/// A search string: trimmed, at most 100 characters, no control
/// characters. `None` when it is blank (no search).
pub fn search(field: &str, value: &str) -> Result<Option<String>, Invalid> {
    if has_control(value) {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > SEARCH_LEN_MAX {
        return Err(Invalid::new(
            field,
            format!("must be at most {SEARCH_LEN_MAX} characters"),
        ));
    }
    Ok(Some(value.to_owned()))
}

/// An optional email address: blank is none; otherwise `local@domain.tld`,
/// at most 254 characters, no whitespace or control characters.
pub fn email(field: &str, value: &str) -> Result<Option<String>, Invalid> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let valid = value.chars().count() <= EMAIL_LEN_MAX
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.contains('@') && domain_ok(domain)
        });
    if valid {
        Ok(Some(value.to_owned()))
    } else {
        Err(Invalid::new(
            field,
            format!(
                "must be an email address (local@domain.tld, at most {EMAIL_LEN_MAX} characters)"
            ),
        ))
    }
}

fn domain_ok(domain: &str) -> bool {
    domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
}

/// A time within [`TIME_MIN`]..=[`TIME_MAX`] (UTC), truncated to the
/// microsecond both databases store.
pub fn time(field: &str, at: DateTime<Utc>) -> Result<DateTime<Utc>, Invalid> {
    let at = truncate_micros(at);
    if !(TIME_MIN..=TIME_MAX).contains(&at) {
        return Err(Invalid::new(
            field,
            "must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z (UTC)",
        ));
    }
    Ok(at)
}

/// An optional time, checked by [`time`].
pub fn time_opt(field: &str, at: Option<DateTime<Utc>>) -> Result<Option<DateTime<Utc>>, Invalid> {
    at.map(|t| time(field, t)).transpose()
}

/// An optional JSON object: `null` is none; otherwise an object of at most
/// `bytes_max` bytes of compact JSON, nested at most [`JSON_DEPTH_MAX`]
/// levels, with no NUL in any string or key.
pub fn json_object(
    field: &str,
    value: Option<&Json>,
    bytes_max: usize,
) -> Result<Option<Json>, Invalid> {
    let value = match value {
        None | Some(Json::Null) => return Ok(None),
        Some(v @ Json::Object(_)) => v,
        Some(_) => return Err(Invalid::new(field, "must be a JSON object")),
    };
    if depth(value) > JSON_DEPTH_MAX {
        return Err(Invalid::new(
            field,
            format!("must nest at most {JSON_DEPTH_MAX} levels deep"),
        ));
    }
    if !fits(value, bytes_max) {
        return Err(Invalid::new(
            field,
            format!("must be at most {bytes_max} bytes of JSON"),
        ));
    }
    if has_nul(value) {
        return Err(Invalid::new(field, "must not contain NUL characters"));
    }
    Ok(Some(value.clone()))
}

/// Levels of nesting: a scalar is 0, `{}` and `[]` are 1. Iterative, so a
/// deep value can't exhaust the stack.
fn depth(value: &Json) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Json>> = match v {
            Json::Object(m) => Box::new(m.values()),
            Json::Array(a) => Box::new(a.iter()),
            _ => {
                deepest = deepest.max(d);
                continue;
            }
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}

fn has_nul(value: &Json) -> bool {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Json::String(s) if s.contains('\0') => return true,
            Json::Object(m) => {
                if m.keys().any(|k| k.contains('\0')) {
                    return true;
                }
                stack.extend(m.values());
            }
            Json::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    false
}

/// Whether the compact JSON of `value` is at most `bytes_max` bytes
/// (stops writing as soon as it is not).
fn fits(value: &Json, bytes_max: usize) -> bool {
    struct Budget(usize);
    impl io::Write for Budget {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 = self
                .0
                .checked_sub(buf.len())
                .ok_or_else(|| io::Error::other("over budget"))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Budget(bytes_max), value).is_ok()
}

#[cfg(test)]
mod tests {
    use chrono::{SecondsFormat, TimeZone};
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_and_names() {
        for (input, expected) in [
            ("order-1", Ok("order-1")),
            ("  acme  ", Ok("acme")),
            ("ügyfél-42", Ok("ügyfél-42")),
            ("", Err("must be 1 to 255 characters")),
            ("   ", Err("must be 1 to 255 characters")),
            ("a\0b", Err("must not contain control characters")),
            ("a\nb", Err("must not contain control characters")),
            ("a\u{7f}b", Err("must not contain control characters")),
            ("a\u{85}b", Err("must not contain control characters")),
            ("key\r", Err("must not contain control characters")),
            ("\tkey", Err("must not contain control characters")),
        ] {
            let got = key("externalId", input);
            match expected {
                Ok(v) => assert_eq!(got.unwrap(), v, "{input:?}"),
                Err(m) => {
                    let e = got.unwrap_err();
                    assert_eq!((e.field.as_str(), e.message.as_str()), ("externalId", m));
                }
            }
        }
        assert!(key("k", &"é".repeat(255)).is_ok(), "characters, not bytes");
        assert!(key("k", &"k".repeat(256)).is_err());
        assert!(name("name", &"n".repeat(100), 100).is_ok());
        assert_eq!(
            name("name", &"n".repeat(101), 100).unwrap_err().message,
            "must be 1 to 100 characters"
        );
        assert!(name("name", "tab\there", 100).is_err());
    }

    #[test]
    fn free_text_refuses_only_nul_and_length() {
        assert_eq!(
            text("description", "two\nlines\tand tabs", 1000).unwrap(),
            "two\nlines\tand tabs"
        );
        assert_eq!(text("description", "", 1000).unwrap(), "");
        assert!(text("description", &"d".repeat(1000), 1000).is_ok());
        let long = text("description", &"d".repeat(1_000_000), 1000).unwrap_err();
        assert_eq!(long.message, "must be at most 1000 characters");
        assert!(!long.to_string().contains("ddd"), "never echoes the input");
        assert_eq!(
            text("description", "a\0b", 1000).unwrap_err().message,
            "must not contain NUL characters"
        );
        assert_eq!(reason("reason", "  refund  ").unwrap(), "refund");
        assert!(reason("reason", " ").is_err());
        assert!(reason("reason", "x\0").is_err());
    }

    #[test]
    fn search_and_email() {
        assert_eq!(search("search", "  ").unwrap(), None);
        assert_eq!(search("search", " acme ").unwrap().as_deref(), Some("acme"));
        assert!(search("search", "\0").is_err());
        assert!(search("search", "acme\n").is_err());
        assert!(search("search", &"s".repeat(101)).is_err());
        assert_eq!(
            email("email", " a@b.co ").unwrap().as_deref(),
            Some("a@b.co")
        );
        assert_eq!(email("email", "").unwrap(), None);
        for bad in [
            "nope", "@b.co", "a@b", "a b@c.d", "a@b.co\0", "a@@b.co", "a@.co",
        ] {
            let e = email("email", bad).unwrap_err();
            assert_eq!(e.field, "email", "{bad:?}");
            assert!(!e.message.contains(bad), "never echoes the input");
        }
        assert!(email("email", &format!("{}@b.co", "a".repeat(250))).is_err());
    }

    #[test]
    fn times_stay_within_1970_to_9999_utc() {
        let utc = |y, mo, d, h, mi, s| Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap();
        let parse = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        for (input, ok) in [
            ("1970-01-01T00:00:00Z", true),
            ("1969-12-31T23:59:59.999999Z", false),
            ("9999-12-31T23:59:59.999999Z", true),
            ("9999-12-31T23:59:59.999999999Z", true),
            ("+10000-01-01T00:00:00Z", false),
            // 9999 as written, 10000 in UTC.
            ("9999-12-31T23:59:59-01:00", false),
            ("0000-01-01T00:00:00Z", false),
            ("-0001-01-01T00:00:00Z", false),
        ] {
            assert_eq!(time("expiresAt", parse(input)).is_ok(), ok, "{input}");
        }
        assert_eq!(
            time("at", parse("9999-12-31T23:59:59.999999999Z")).unwrap(),
            TIME_MAX,
            "truncated to the microsecond, even past 2262"
        );
        assert_eq!(TIME_MAX, parse("9999-12-31T23:59:59.999999Z"));
        assert_eq!(TIME_MIN, utc(1970, 1, 1, 0, 0, 0));
        let e = time("startAt", parse("-0001-01-01T00:00:00Z")).unwrap_err();
        assert_eq!(e.field, "startAt");
        assert_eq!(time_opt("at", None).unwrap(), None);
    }

    /// SQLite stores a `DateTime<Utc>` as sqlx writes it (RFC 3339,
    /// fractional digits only when needed, `+00:00`) and the engine's SQL
    /// compares that text. Within the range, text order is time order;
    /// past 9999 it is not — which is why the range exists.
    #[test]
    fn sqlite_text_order_is_time_order_within_the_range() {
        let sqlite_text = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, false);
        let parse = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let mut times: Vec<DateTime<Utc>> = [
            "1970-01-01T00:00:00Z",
            "1970-01-01T00:00:00.000001Z",
            "2026-01-31T12:00:00Z",
            "2026-01-31T12:00:00.5Z",
            "2026-01-31T12:00:00.500001Z",
            "2026-01-31T12:00:00.999Z",
            "2026-01-31T12:00:01Z",
            "2262-04-12T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59.999999Z",
        ]
        .iter()
        .map(|s| time("at", parse(s)).unwrap())
        .collect();
        times.sort();
        let mut texts: Vec<String> = times.iter().map(sqlite_text).collect();
        let in_time_order = texts.clone();
        texts.sort();
        assert_eq!(texts, in_time_order);
        // The failure the range prevents.
        assert!(
            sqlite_text(&parse("+10000-01-01T00:00:00Z"))
                < sqlite_text(&parse("2026-01-31T12:00:00Z"))
        );
    }

    #[test]
    fn json_objects_are_bounded() {
        let ok = json!({"plan": "pro", "tags": ["a", "b"], "n": 1});
        assert_eq!(
            json_object("metadata", Some(&ok), METADATA_BYTES_MAX).unwrap(),
            Some(ok.clone())
        );
        assert_eq!(json_object("metadata", None, 16).unwrap(), None);
        assert_eq!(
            json_object("metadata", Some(&Json::Null), 16).unwrap(),
            None
        );
        let nest = |levels: usize| {
            let mut v = json!(1);
            for _ in 0..levels {
                v = json!({ "a": v });
            }
            v
        };
        assert_eq!(depth(&nest(8)), 8);
        assert_eq!(depth(&json!({"a": [[1]]})), 3);
        assert!(json_object("metadata", Some(&nest(8)), METADATA_BYTES_MAX).is_ok());
        for (value, bytes_max, message) in [
            (json!([1]), 100, "must be a JSON object"),
            (json!("x"), 100, "must be a JSON object"),
            (
                nest(9),
                METADATA_BYTES_MAX,
                "must nest at most 8 levels deep",
            ),
            (
                json!({"k": "x".repeat(100)}),
                100,
                "must be at most 100 bytes of JSON",
            ),
            (json!({"k": "a\0b"}), 100, "must not contain NUL characters"),
            (json!({"a\0": 1}), 100, "must not contain NUL characters"),
            (
                json!({"k": [{"z": "\0"}]}),
                100,
                "must not contain NUL characters",
            ),
        ] {
            let e = json_object("metadata", Some(&value), bytes_max).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.message.as_str()),
                ("metadata", message)
            );
        }
        // Exactly at the size limit is fine.
        let v = json!({"k": "x".repeat(100 - 8)});
        assert_eq!(v.to_string().len(), 100);
        assert!(json_object("metadata", Some(&v), 100).is_ok());
        // Deep input doesn't exhaust the stack.
        let mut deep = json!(0);
        for _ in 0..100_000 {
            deep = Json::Array(vec![deep]);
        }
        assert_eq!(depth(&deep), 100_000);
        std::mem::forget(deep); // dropping recurses; not what is tested here
    }
}
