//! Static files embedded in the binary (`api/assets/`), served at
//! `GET /assets/{*path}`: GraphiQL's page and its start-up script, the
//! customer widgets (`widgets/credits.js`, and their demo page served at
//! `GET /widgets/demo`), the console (`console/`, its page served at
//! `GET /console` and every `/console/…` path), and the
//! browser builds of GraphiQL and React vendored from npm by
//! `api/assets/vendor.sh` into `api/assets/vendor/`. Nothing is fetched
//! from the network at build or run time, so GraphiQL works offline.
//!
//! Vendored files have their package's version in their path
//! (`vendor/graphiql@4.1.2/…`), so they are cached for a year as
//! `immutable`; our own files are revalidated (`no-cache`) by `ETag`.
//! HTML pages carry a `Content-Security-Policy` that lets them load
//! scripts, styles and connections from their own origin only.

use std::sync::OnceLock;

use axum::{
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// One embedded file: its path under `api/assets/` and its bytes.
struct Asset {
    path: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset { path: $path, bytes: include_bytes!(concat!("../../assets/", $path)) }),*]
    };
}

/// Every served file. A test holds this list equal to the files on disk.
static ASSETS: &[Asset] = assets![
    "graphiql.html",
    "graphiql.js",
    "graphiql.css",
    "vendor/graphiql@4.1.2/graphiql.min.js",
    "vendor/graphiql@4.1.2/graphiql.min.css",
    "vendor/graphiql@4.1.2/LICENSE",
    "vendor/react@18.3.1/react.production.min.js",
    "vendor/react@18.3.1/LICENSE",
    "vendor/react-dom@18.3.1/react-dom.production.min.js",
    "vendor/react-dom@18.3.1/LICENSE",
    "widgets/credits.js",
    "widgets/demo.html",
    "widgets/demo.css",
    "widgets/demo.js",
    "console/index.html",
    "console/console.css",
    "console/console.js",
    "console/pages.js",
    "console/ui.js",
    "console/customers.js",
    "console/catalog.js",
    "console/money.js",
    "console/operations.js",
];

/// The policy of every HTML page: scripts, styles, fonts and connections
/// (`'self'` includes `ws:`/`wss:` to the same host) from this origin
/// only; GraphiQL's fonts and icons are `data:` URLs inside its CSS.
/// Inline styles are allowed because GraphiQL's dialogs insert a
/// `<style>` element; inline scripts are not.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A year: vendored files never change under their versioned path.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The content type for a file name's extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        _ => "text/plain; charset=utf-8",
    }
}

/// FNV-1a, 64 bits: a stable fingerprint of a file's bytes for `ETag`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The `ETag` of every asset, in [`ASSETS`]' order, computed once.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(a.bytes)))
                    .expect("hex is a valid header value")
            })
            .collect()
    })
}

/// The response for one asset: 304 when `If-None-Match` names its `ETag`.
fn respond(asset: &'static Asset, request: &HeaderMap) -> Response {
    let index = ASSETS
        .iter()
        .position(|a| std::ptr::eq(a, asset))
        .expect("an asset of the table");
    let etag = etags()[index].clone();
    let cache = if asset.path.starts_with("vendor/") {
        IMMUTABLE
    } else {
        "no-cache"
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, content_type(asset.path))],
            asset.bytes,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.path.ends_with(".html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

/// `GET /assets/{*path}`.
pub async fn get(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match find(&path) {
        Some(asset) => respond(asset, &headers),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such asset",
        )
            .into_response(),
    }
}

/// GraphiQL's page (served at `GET /graphql` to browsers).
pub fn graphiql(headers: &HeaderMap) -> Response {
    respond(
        find("graphiql.html").expect("graphiql.html is embedded"),
        headers,
    )
}

/// `GET /widgets/demo`: the customer widgets for the token, customer and
/// credit system in the page's URL (read by the page's own script; the
/// server never writes them into the page).
pub async fn widgets_demo(headers: HeaderMap) -> Response {
    respond(
        find("widgets/demo.html").expect("widgets/demo.html is embedded"),
        &headers,
    )
}

/// `GET /console` and every `/console/…` path: the console's one page
/// (its script routes on the URL, with the History API). It holds no
/// data; it signs in with an API key and speaks only `/graphql`.
pub async fn console(headers: HeaderMap) -> Response {
    respond(
        find("console/index.html").expect("console/index.html is embedded"),
        &headers,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `api/assets/` that a browser may load, except the
    /// npm tooling, is embedded, and nothing embedded is missing on disk.
    #[test]
    fn the_table_lists_every_file_on_disk() {
        fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                if path.is_dir() {
                    if name != "node_modules" {
                        walk(&path, root, out);
                    }
                } else if !matches!(
                    name.as_str(),
                    "package.json" | "package-lock.json" | "vendor.sh" | ".gitignore"
                ) {
                    let relative = path.strip_prefix(root).unwrap();
                    out.push(relative.to_str().unwrap().replace('\\', "/"));
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut on_disk = Vec::new();
        walk(&root, &root, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("a/b.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("b.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("graphiql.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("vendor/x@1/LICENSE"),
            "text/plain; charset=utf-8"
        );
    }

    #[test]
    fn fnv1a_matches_its_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
