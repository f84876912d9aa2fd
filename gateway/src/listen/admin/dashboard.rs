//! The dashboard: a page with its script and style, built into the binary
//! (no CDN, works offline), served by the admin listener under
//! `/dashboard/`. It reads and acts through the operator API with the
//! caller's own identity, so it shows exactly what that operator may see.
//!
//! The page allows scripts, styles and requests of its own origin only, and
//! no framing (a click on "discard" cannot be hijacked by another site).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::listen::portal::HttpResponse;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");

/// The policy for the page: nothing from elsewhere, no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The asset at `path` (below `/dashboard`), if there is one.
pub(super) fn asset(path: &str) -> Option<HttpResponse> {
    let (body, ctype) = match path {
        "/dashboard" => return Some(redirect("/dashboard/")),
        "/dashboard/" | "/dashboard/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/dashboard/app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/dashboard/app.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return None,
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    secure(h);
    Some(r)
}

/// `/` and `/dashboard` lead to the page.
pub(super) fn redirect(to: &'static str) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut()
        .insert(http::header::LOCATION, HeaderValue::from_static(to));
    r
}

/// Headers every page of the admin listener carries.
pub(super) fn secure(h: &mut http::HeaderMap) {
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        http::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    h.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
}

/// Why a request that a browser may have sent on another site's behalf is
/// refused, if it is:
/// - on the plain (loopback) listener, a `Host` that is not a loopback name:
///   a page of another site whose name was made to resolve to 127.0.0.1
///   (DNS rebinding) would otherwise read and act as `local`;
/// - a change (anything but GET/HEAD) that a browser marks as coming from
///   another site (`Sec-Fetch-Site`), or whose `Origin` is not this host.
///
/// Clients that are not browsers (the CLI, curl, Prometheus) send neither
/// header and are not affected.
pub(super) fn foreign(head: &http::request::Parts, plain: bool) -> Option<String> {
    let header = |name: &str| {
        head.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let host = header("host").or_else(|| head.uri.authority().map(|a| a.to_string()));
    if plain {
        if let Some(h) = &host {
            if !loopback_host(h) {
                return Some(format!(
                    "the plain admin listener answers only to a loopback name (127.0.0.1, [::1], localhost), not to Host {h:?}"
                ));
            }
        }
    }
    let safe = matches!(head.method, http::Method::GET | http::Method::HEAD);
    if safe {
        return None;
    }
    if let Some(site) = header("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return Some(format!(
                "a change requested by a page of another site ({site}) is refused"
            ));
        }
    }
    if let Some(origin) = header("origin") {
        let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or("");
        if host.as_deref() != Some(authority) {
            return Some(format!(
                "a change requested from origin {origin:?} is refused: not this listener's"
            ));
        }
    }
    None
}

fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(n, _)| n),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder()
            .method(method)
            .uri("/admin/v1/status");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn requests_from_other_sites_are_refused() {
        // The CLI and curl: no browser headers.
        assert_eq!(
            foreign(&head("POST", &[("host", "127.0.0.1:9090")]), true),
            None
        );
        assert_eq!(
            foreign(&head("GET", &[("host", "localhost:9090")]), true),
            None
        );
        assert_eq!(foreign(&head("GET", &[("host", "[::1]:9090")]), true), None);
        // DNS rebinding: another name on the loopback listener.
        assert!(foreign(&head("GET", &[("host", "evil.example:9090")]), true).is_some());
        // Any name on the HTTPS listener (certificates decide there).
        assert_eq!(
            foreign(&head("GET", &[("host", "gw.example:9443")]), false),
            None
        );
        // The dashboard's own POST.
        let own = [
            ("host", "gw.example:9443"),
            ("origin", "https://gw.example:9443"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert_eq!(foreign(&head("POST", &own), false), None);
        // Another site's form or fetch.
        assert!(foreign(
            &head(
                "POST",
                &[
                    ("host", "gw.example:9443"),
                    ("sec-fetch-site", "cross-site")
                ]
            ),
            false
        )
        .is_some());
        assert!(foreign(
            &head(
                "POST",
                &[
                    ("host", "gw.example:9443"),
                    ("origin", "https://evil.example")
                ]
            ),
            false
        )
        .is_some());
        assert!(foreign(
            &head("DELETE", &[("host", "127.0.0.1:9090"), ("origin", "null")]),
            true
        )
        .is_some());
    }

    #[test]
    fn the_page_allows_nothing_from_elsewhere() {
        let r = asset("/dashboard/").unwrap();
        let csp = r.headers()[http::header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
        assert!(
            !SCRIPT.contains("https://"),
            "the script loads nothing from elsewhere"
        );
        assert_eq!(asset("/dashboard").unwrap().status(), StatusCode::SEE_OTHER);
        assert!(asset("/dashboard/../Cargo.toml").is_none());
    }
}
