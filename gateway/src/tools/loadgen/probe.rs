//! Before the load: one submission of the profile, so that a gateway which
//! refuses it says why once, instead of refusing every request of the run.
//!
//! When the profile's Leistung is refused (no route, not allowed for the
//! portal, not the data its schema wants) and the user named none, the routes
//! the admin listener lists are tried in turn, and the first one the gateway
//! accepts the profile's data for is used — with a note saying so. Probes are
//! real submissions (one per Leistung tried).

use bytes::Bytes;

use super::{LoadOptions, Profile};

/// Most Leistungen tried before giving up.
const MOST_PROBES: usize = 20;

/// Refusals a different Leistung can cure.
const ROUTE_REFUSALS: &[&str] = &[
    "no-route",
    "leistung-not-allowed",
    "schema-violation",
    "unsupported-media-type",
];

/// The slug of a refused answer's problem type (`/problems/<slug>`), or `http-<status>`.
pub fn reason(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v["type"]
                .as_str()
                .and_then(|t| t.strip_prefix("/problems/"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("http-{status}"))
}

/// A refused probe: its status, problem slug and detail.
struct Refused {
    status: u16,
    slug: String,
    detail: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.slug, self.detail)
    }
}

/// Sends the profile once; `None` when it was accepted.
async fn probe(
    client: &reqwest::Client,
    url: &str,
    profile: &Profile,
) -> Result<Option<Refused>, String> {
    let (body, content_type): (Bytes, String) = profile.body();
    let resp = client
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("cannot reach the gateway at {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    if status == 202 {
        return Ok(None);
    }
    let detail = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok(Some(Refused {
        status,
        slug: reason(status, &body),
        detail,
    }))
}

/// The (Leistung, destination) pairs the admin listener's routes name, in
/// their order; patterns are filled with the profile's destination where it
/// matches, else with the pattern's prefix.
async fn routed(
    admin_client: &reqwest::Client,
    admin: &str,
    profile: &Profile,
) -> Vec<(String, String)> {
    let Ok(resp) = admin_client
        .get(format!("{}/admin/v1/routes", admin.trim_end_matches('/')))
        .send()
        .await
    else {
        return Vec::new();
    };
    let routes: serde_json::Value = resp.json().await.unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    for r in routes["routes"].as_array().into_iter().flatten() {
        let (Some(l), Some(d)) = (r["leistung"].as_str(), r["destination"].as_str()) else {
            continue;
        };
        if l.contains('*') {
            continue;
        }
        let destination = match d.strip_suffix('*') {
            Some(prefix) if profile.destination.starts_with(prefix) => profile.destination.clone(),
            Some("") => profile.destination.clone(),
            Some(prefix) => prefix.to_owned(),
            None => d.to_owned(),
        };
        let pair = (l.to_owned(), destination);
        if !out.contains(&pair) {
            out.push(pair);
        }
    }
    out
}

/// The example data files of a checkout (`schemas/examples/*.xml`, `*.json`
/// that are no schemas), when run from one.
fn examples() -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir("schemas/examples")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            (name.ends_with(".xml") || name.ends_with(".json")) && !name.ends_with(".schema.json")
        })
        .collect();
    files.sort();
    files
}

/// Makes sure the gateway accepts `profile`, changing its Leistung and
/// destination to a routed one if it may (`o.fit`). Returns a note for the
/// user when it changed them; an error that names the refusal and the option
/// to set when nothing is accepted.
pub async fn fit(
    profile: &mut Profile,
    o: &LoadOptions,
    client: &reqwest::Client,
    url: &str,
) -> Result<Option<String>, String> {
    let Some(first) = probe(client, url, profile).await? else {
        return Ok(None);
    };
    let explain = |r: &Refused, what: &str| {
        format!(
            "the gateway refused the first submission ({what}): {r}\n  fix: {}",
            match r.slug.as_str() {
                "unknown-client" | "client-certificate-untrusted" | "client-certificate-required" =>
                    "pass a registered portal's certificate with --cert/--key (the shipped config registers certs-example/portal.pem)",
                "no-route" | "leistung-not-allowed" | "schema-violation" | "unsupported-media-type" =>
                    "pass --leistung (and --destination) the portal may send and a route takes, and --data FILE with data its schema (if any) accepts; or add a route for the profile's Leistung (bench/gateway-bench.toml routes 99000000000001 and 99000000000002)",
                "portal-rate-limited" | "portal-too-many-uploads" =>
                    "raise the portal's rate / uploads ([[portals]] rate, uploads, or [ingest.limits] portal_rate, portal_uploads)",
                _ => "see the detail; the README's refusal table says what each problem means",
            }
        )
    };
    let what = format!(
        "Leistung {}, destination {}",
        profile.leistung, profile.destination
    );
    if !o.fit || !ROUTE_REFUSALS.contains(&first.slug.as_str()) {
        return Err(explain(&first, &what));
    }
    let Some(admin) = o.admin.as_deref().and_then(|a| a.split(',').next()) else {
        return Err(explain(&first, &what));
    };
    let mut tried = vec![format!("{}: {}", profile.leistung, first.slug)];
    // The profile's data first; where a schema refuses it, the example data
    // of a checkout (what the shipped config's schemas are written for).
    let mut variants = vec![profile.clone()];
    if profile.data.is_none() {
        variants.extend(
            examples()
                .into_iter()
                .filter_map(|f| profile.clone().with_data_file(&f).ok()),
        );
    }
    let mut probes = 0;
    for (leistung, destination) in routed(client, admin, profile).await {
        for variant in &variants {
            if probes == MOST_PROBES {
                break;
            }
            if leistung == profile.leistung
                && destination == profile.destination
                && variant.data == profile.data
            {
                continue;
            }
            let candidate = Profile {
                leistung: leistung.clone(),
                destination: destination.clone(),
                ..variant.clone()
            };
            probes += 1;
            match probe(client, url, &candidate).await? {
                None => {
                    let data = match &candidate.data {
                        Some((_, _, from)) if profile.data.is_none() => {
                            format!(" with the data of {from} (--data)")
                        }
                        _ => String::new(),
                    };
                    let note = format!(
                        "Leistung {} is refused here ({}); using Leistung {leistung}, destination {destination}{data}, which the gateway accepts (choose with --leistung and --destination)",
                        profile.leistung, first.slug
                    );
                    *profile = candidate;
                    return Ok(Some(note));
                }
                Some(r) => tried.push(format!("{leistung}: {}", r.slug)),
            }
        }
    }
    Err(format!(
        "{}\n  tried the routed Leistungen too: {}",
        explain(&first, &what),
        tried.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::reason;

    #[test]
    fn a_refusal_is_named_by_its_problem_type_or_status() {
        assert_eq!(
            reason(422, br#"{"type":"/problems/no-route","detail":"x"}"#),
            "no-route"
        );
        assert_eq!(reason(503, b"<html>busy</html>"), "http-503");
        assert_eq!(reason(400, br#"{"type":"about:blank"}"#), "http-400");
    }
}
