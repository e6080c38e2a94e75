//! Where webhooks may go: public addresses only, over HTTPS, unless the
//! development setting `WEBHOOK_ALLOW_PRIVATE=true` says otherwise.
//!
//! The rules are checked twice. At registration ([`check_url`], then
//! [`check_resolved`] on the names the host resolves to) so a bad URL is
//! refused at once; and at every delivery, by the worker's transport, on
//! the addresses it actually connects to (its resolver drops every address
//! [`is_public`] refuses), so a name that resolves elsewhere later (DNS
//! rebinding) gains nothing. A name that does not resolve at registration
//! is accepted: it is checked again at each delivery.
//!
//! Refused: loopback, private (RFC 1918, RFC 4193), link-local, shared
//! (CGNAT, RFC 6598), multicast, unspecified, broadcast and reserved
//! addresses, benchmarking and documentation ranges, the IPv4-mapped,
//! -compatible, NAT64 and 6to4 forms of those, and local or internal
//! names (single-label names such as `localhost` or `metadata`,
//! `*.localhost`, `*.internal` such as `metadata.google.internal`,
//! `*.local`, `*.home.arpa`). Cloud metadata addresses (169.254.169.254,
//! fd00:ec2::254, 100.100.100.200, 192.0.0.192) fall in those ranges.
//!
//! Messages say which rule refused, never an address a name resolved to.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use url::{Host, Url};

/// Whether webhook targets must be public (the default) or may be private
/// (development and tests: `WEBHOOK_ALLOW_PRIVATE=true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetPolicy {
    /// Public addresses over HTTPS only.
    #[default]
    PublicOnly,
    /// Any address, over HTTP or HTTPS.
    AllowPrivate,
}

impl TargetPolicy {
    pub fn from_allow_private(allow_private: bool) -> Self {
        if allow_private {
            TargetPolicy::AllowPrivate
        } else {
            TargetPolicy::PublicOnly
        }
    }

    pub fn allows_private(self) -> bool {
        self == TargetPolicy::AllowPrivate
    }
}

/// Why a target was refused (the message names the rule, not an address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("must be an http:// or https:// URL with a host")]
    Malformed,
    #[error("must use https:// (http:// only with WEBHOOK_ALLOW_PRIVATE=true)")]
    NotHttps,
    #[error(
        "must name a public address: loopback, private, link-local, shared (CGNAT), multicast, unspecified and reserved addresses are refused"
    )]
    NotPublicAddress,
    #[error(
        "must name a public host: local and internal names (localhost, metadata, *.internal, *.local, single-label names) are refused"
    )]
    LocalName,
    #[error("must name a host whose addresses are all public")]
    ResolvesToNonPublic,
}

impl Refusal {
    /// What an attempt log says (no address, no URL).
    pub fn kind(self) -> &'static str {
        match self {
            Refusal::Malformed => "the target URL is malformed",
            Refusal::NotHttps => "the target is not https://",
            Refusal::NotPublicAddress | Refusal::ResolvesToNonPublic => {
                "the target is not a public address"
            }
            Refusal::LocalName => "the target is a local or internal name",
        }
    }
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0 // "this network", 0.0.0.0 included
        || a == 10 // RFC 1918
        || (a == 100 && (64..128).contains(&b)) // shared, CGNAT (RFC 6598)
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // RFC 1918
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // RFC 1918
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224; // multicast, reserved, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // IPv4-mapped (::ffff:a.b.c.d) and -compatible (::a.b.c.d, which
    // covers :: and ::1): the IPv4 address decides.
    if s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff) {
        return is_public_v4(embedded(s[6], s[7]));
    }
    // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7]));
    }
    // 6to4 (2002::/16) carries an IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2]));
    }
    // Only global unicast (2000::/3) is public; within it, IETF protocol
    // assignments (2001::/23: Teredo, benchmarking, …) and documentation
    // (2001:db8::/32) are not. Outside it: ULA fc00::/7, link-local
    // fe80::/10, site-local fec0::/10, multicast ff00::/8, discard 100::/64,
    // local NAT64 64:ff9b:1::/48.
    let global_unicast = s[0] & 0xe000 == 0x2000;
    let ietf = s[0] == 0x2001 && s[1] < 0x0200;
    let documentation = s[0] == 0x2001 && s[1] == 0x0db8;
    global_unicast && !ietf && !documentation
}

/// Whether a host name is local or internal by its form alone.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    !name.contains('.')
        || ["localhost", "internal", "local", "home.arpa"]
            .iter()
            .any(|suffix| name.ends_with(&format!(".{suffix}")))
}

/// Parses a webhook URL the way the HTTP client will (WHATWG: `127.1` and
/// `2130706433` are 127.0.0.1) and applies the rules that need no DNS.
pub fn check_url(raw: &str, policy: TargetPolicy) -> Result<Url, Refusal> {
    let url = Url::parse(raw).map_err(|_| Refusal::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refusal::Malformed);
    }
    let host = url.host().ok_or(Refusal::Malformed)?;
    if policy.allows_private() {
        return Ok(url);
    }
    if url.scheme() != "https" {
        return Err(Refusal::NotHttps);
    }
    match host {
        Host::Ipv4(ip) if !is_public_v4(ip) => Err(Refusal::NotPublicAddress),
        Host::Ipv6(ip) if !is_public_v6(ip) => Err(Refusal::NotPublicAddress),
        Host::Domain(name) if is_local_name(name) => Err(Refusal::LocalName),
        _ => Ok(url),
    }
}

/// How long registration waits for DNS before accepting a name (it is
/// checked again at each delivery).
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// After [`check_url`]: resolves a host name and refuses it if any of its
/// addresses is not public. A name that does not resolve (or not within
/// [`RESOLVE_TIMEOUT`]) is accepted; delivery checks it again.
pub async fn check_resolved(url: &Url, policy: TargetPolicy) -> Result<(), Refusal> {
    if policy.allows_private() {
        return Ok(());
    }
    let Some(Host::Domain(name)) = url.host() else {
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::net::lookup_host((name, port));
    match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(mut addrs)) => {
            if addrs.all(|a| is_public(a.ip())) {
                Ok(())
            } else {
                Err(Refusal::ResolvesToNonPublic)
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_public_or_not() {
        let refused = [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "100.100.100.200",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.192",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "2001:db8::1",
        ];
        for ip in refused {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(!is_public(parsed), "{ip} should be refused");
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "169.253.1.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
        ];
        for ip in public {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(is_public(parsed), "{ip} should be public");
        }
    }

    /// The URLs of the finding, and their kin.
    const REFUSED_URLS: [(&str, Refusal); 17] = [
        ("https://127.0.0.1/hook", Refusal::NotPublicAddress),
        ("https://localhost/hook", Refusal::LocalName),
        ("https://LOCALHOST./hook", Refusal::LocalName),
        ("https://api.localhost/hook", Refusal::LocalName),
        ("https://0.0.0.0/hook", Refusal::NotPublicAddress),
        ("https://2130706433/hook", Refusal::NotPublicAddress),
        ("https://127.1/hook", Refusal::NotPublicAddress),
        ("https://0x7f.1/hook", Refusal::NotPublicAddress),
        ("https://[::1]/hook", Refusal::NotPublicAddress),
        ("https://[::ffff:127.0.0.1]/hook", Refusal::NotPublicAddress),
        ("https://10.0.0.1:6379/", Refusal::NotPublicAddress),
        ("https://192.168.1.1/hook", Refusal::NotPublicAddress),
        ("https://100.64.0.1/hook", Refusal::NotPublicAddress),
        (
            "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
            Refusal::NotPublicAddress,
        ),
        (
            "https://metadata.google.internal/computeMetadata/v1/",
            Refusal::LocalName,
        ),
        ("https://metadata/computeMetadata/v1/", Refusal::LocalName),
        ("https://[fe80::1]/hook", Refusal::NotPublicAddress),
    ];

    #[test]
    fn urls_are_checked_by_policy() {
        for (url, why) in REFUSED_URLS {
            assert_eq!(
                check_url(url, TargetPolicy::PublicOnly).unwrap_err(),
                why,
                "{url}"
            );
            let http = url.replacen("https://", "http://", 1);
            assert_eq!(
                check_url(&http, TargetPolicy::PublicOnly).unwrap_err(),
                Refusal::NotHttps,
                "{http}"
            );
            // The development setting lets all of them through.
            assert!(check_url(url, TargetPolicy::AllowPrivate).is_ok(), "{url}");
            assert!(
                check_url(&http, TargetPolicy::AllowPrivate).is_ok(),
                "{http}"
            );
        }
        for url in [
            "https://hooks.example.com/credits",
            "https://8.8.8.8/x",
            "https://[2606:4700:4700::1111]:8443/x",
        ] {
            assert!(check_url(url, TargetPolicy::PublicOnly).is_ok(), "{url}");
        }
        for bad in [
            "ftp://x.example/",
            "https://",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert_eq!(
                check_url(bad, TargetPolicy::AllowPrivate).unwrap_err(),
                Refusal::Malformed,
                "{bad}"
            );
        }
        // No message carries an address.
        for (_, why) in REFUSED_URLS {
            let m = why.to_string();
            assert!(!m.contains("127.") && !m.contains("169.254"), "{m}");
        }
    }

    #[tokio::test]
    async fn names_are_resolved_at_registration() {
        let localhost = Url::parse("https://localhost.example/").unwrap();
        // Does not resolve here: accepted, checked again at delivery.
        assert_eq!(
            check_resolved(&localhost, TargetPolicy::PublicOnly).await,
            Ok(())
        );
        // `localhost` resolves to loopback (its form is refused by
        // check_url too; here the resolution alone refuses it).
        let url = Url::parse("https://localhost:9/").unwrap();
        assert_eq!(
            check_resolved(&url, TargetPolicy::PublicOnly).await,
            Err(Refusal::ResolvesToNonPublic)
        );
        assert_eq!(
            check_resolved(&url, TargetPolicy::AllowPrivate).await,
            Ok(())
        );
        // IP literals were checked by check_url.
        let literal = Url::parse("https://8.8.8.8/").unwrap();
        assert_eq!(
            check_resolved(&literal, TargetPolicy::PublicOnly).await,
            Ok(())
        );
    }
}
