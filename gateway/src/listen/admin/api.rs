//! The operator API (`/admin/v1/…`, JSON; documented in `schemas/openapi.yaml`):
//!
//! - `GET  /admin/v1/status` — the instance and the queues the operator sees
//! - `GET  /admin/v1/targets`, `GET /admin/v1/targets/{id}`
//! - `POST /admin/v1/targets/{id}/pause[?reason=…]`, `…/resume`
//! - `POST /admin/v1/targets/{id}/parked/retry?all=true`, `…/parked/discard?all=true`
//! - `GET  /admin/v1/deliveries?state=&target=&leistung=&older_than=&after=&limit=`
//! - `POST /admin/v1/deliveries/{message_id}/retry|park|discard`
//! - `GET  /admin/v1/submissions/{id}` — with its deliveries and Laufzettel
//! - `GET  /admin/v1/stats?period=&by=&from=&to=&format=` — case statistics (JSON or CSV)
//! - `POST /admin/v1/targets`, `PUT|DELETE /admin/v1/targets/{id}`,
//!   `POST /admin/v1/targets/{id}/test` — targets registered at run time
//! - `GET|POST /admin/v1/routes`, `DELETE /admin/v1/routes?leistung=&destination=`

use bytes::Bytes;
use http::{Method, StatusCode};

use super::{text, Admin};
use crate::config::registered::{RegisteredRoute, RegisteredTarget};
use crate::core::operator::PAGE_MAX;
use crate::core::stats::StatsQuery;
use crate::listen::portal::HttpResponse;
use crate::listen::problem::Problem;
use crate::model::delivery::{Action, DeliveryQuery, DeliveryState};
use crate::model::portal::Operator;
use crate::model::time::now_ms;

/// Default page size of the delivery list.
const PAGE_DEFAULT: usize = 100;

fn json(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    text(status, "application/json", body.to_string())
}

fn not_found(method: &Method, path: &str) -> Problem {
    Problem::new(
        404,
        "not-found",
        format!("no operator resource {method} {path}"),
    )
}

/// Decodes `%XX` and `+` of a query value; `None` if it is not UTF-8.
fn decode(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b'%' => return None,
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The query's pairs, decoded; only the names in `allowed`, each once.
fn query<'a>(
    head: &http::request::Parts,
    allowed: &[&'a str],
) -> Result<Vec<(&'a str, String)>, Problem> {
    let mut pairs: Vec<(&'a str, String)> = Vec::new();
    for pair in head
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(name) = allowed.iter().find(|a| **a == k) else {
            return Err(Problem::bad_request(
                "query-invalid",
                format!(
                    "unknown query parameter {:?}; allowed: {}",
                    decode(k).unwrap_or_default(),
                    allowed.join(", ")
                ),
            ));
        };
        if pairs.iter().any(|(n, _)| n == name) {
            return Err(Problem::bad_request(
                "query-invalid",
                format!("{name} is given twice"),
            ));
        }
        let v = decode(v).ok_or_else(|| {
            Problem::bad_request(
                "query-invalid",
                format!("{name}: not valid percent-encoded UTF-8"),
            )
        })?;
        pairs.push((name, v));
    }
    Ok(pairs)
}

fn get<'a>(pairs: &'a [(&str, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

/// A JSON body as `T`; `id`, when given, is the path's and fills a missing `id`.
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes, id: Option<&str>) -> Result<T, Problem> {
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request("body-invalid", format!("the body is not JSON: {e}")))?;
    let Some(object) = value.as_object_mut() else {
        return Err(Problem::bad_request(
            "body-invalid",
            "the body is a JSON object",
        ));
    };
    if let Some(id) = id {
        match object.get("id") {
            None => {
                object.insert("id".into(), id.into());
            }
            Some(v) if v == id => {}
            Some(_) => {
                return Err(Problem::bad_request(
                    "body-invalid",
                    "the body's id is not the path's",
                ))
            }
        }
    }
    serde_json::from_value(value)
        .map_err(|e| Problem::bad_request("body-invalid", format!("the body: {e}")))
}

/// One path segment: an id, not empty, no slash.
fn segment(s: &str) -> Option<&str> {
    (!s.is_empty() && !s.contains('/')).then_some(s)
}

/// The operator API.
pub(super) async fn route(
    admin: &Admin,
    op: &Operator,
    head: &http::request::Parts,
    body: &Bytes,
) -> Result<HttpResponse, Problem> {
    let ops = &admin.operations;
    let path = head.uri.path();
    let rest = path.strip_prefix("/admin/v1/").unwrap_or_default();
    let parts: Vec<&str> = rest.split('/').collect();
    let method = &head.method;
    match (method, parts.as_slice()) {
        (&Method::GET, ["status"]) => {
            query(head, &[])?;
            let targets = ops.targets(op).await?;
            let mut queue = std::collections::BTreeMap::<&str, u64>::new();
            for t in &targets {
                for (state, n) in &t.queue {
                    *queue.entry(state).or_default() += n;
                }
            }
            let ready = admin.observe.ready();
            Ok(json(
                StatusCode::OK,
                serde_json::json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "ready": ready.is_ok(),
                    "not_ready_because": ready.err().map(|r| r.detail),
                    "operator": {"id": op.id, "tenants": op.tenants, "targets": op.targets},
                    "queue": queue,
                    "targets": targets.len(),
                    "paused": targets.iter().filter(|t| t.paused.is_some()).map(|t| &t.id).collect::<Vec<_>>(),
                    "breakers_open": targets.iter().filter(|t| t.breaker.state != "closed").map(|t| &t.id).collect::<Vec<_>>(),
                    "oldest_waiting_seconds": targets.iter().filter_map(|t| t.oldest_waiting_seconds).max(),
                }),
            ))
        }
        (&Method::GET, ["targets"]) => {
            query(head, &[])?;
            let targets = ops.targets(op).await?;
            Ok(json(
                StatusCode::OK,
                serde_json::json!({ "targets": targets }),
            ))
        }
        (&Method::POST, ["targets"]) => {
            query(head, &[])?;
            let target: RegisteredTarget = parse(body, None)?;
            let t = admin.registry.put_target(op, target, true).await?;
            Ok(json(
                StatusCode::CREATED,
                serde_json::to_value(t).unwrap_or_default(),
            ))
        }
        (&Method::PUT, ["targets", id]) if segment(id).is_some() => {
            query(head, &[])?;
            let target: RegisteredTarget = parse(body, Some(id))?;
            let t = admin.registry.put_target(op, target, false).await?;
            Ok(json(
                StatusCode::OK,
                serde_json::to_value(t).unwrap_or_default(),
            ))
        }
        (&Method::DELETE, ["targets", id]) if segment(id).is_some() => {
            query(head, &[])?;
            admin.registry.remove_target(op, id).await?;
            Ok(json(
                StatusCode::OK,
                serde_json::json!({"removed": id, "by": op.id}),
            ))
        }
        (&Method::POST, ["targets", id, "test"]) if segment(id).is_some() => {
            query(head, &[])?;
            let outcome = admin.registry.test_target(op, id).await?;
            Ok(json(
                StatusCode::OK,
                serde_json::to_value(outcome).unwrap_or_default(),
            ))
        }
        (&Method::GET, ["routes"]) => {
            query(head, &[])?;
            let routes = ops.directory.load().routes_for(op);
            Ok(json(
                StatusCode::OK,
                serde_json::json!({ "routes": routes }),
            ))
        }
        (&Method::POST, ["routes"]) => {
            query(head, &[])?;
            let route: RegisteredRoute = parse(body, None)?;
            let r = admin.registry.put_route(op, route).await?;
            Ok(json(
                StatusCode::CREATED,
                serde_json::to_value(r).unwrap_or_default(),
            ))
        }
        (&Method::DELETE, ["routes"]) => {
            let q = query(head, &["leistung", "destination"])?;
            let Some(leistung) = get(&q, "leistung") else {
                return Err(Problem::bad_request(
                    "query-invalid",
                    "name the route's leistung= (and destination=, default *)",
                ));
            };
            let destination = get(&q, "destination").unwrap_or("*");
            admin
                .registry
                .remove_route(op, leistung, destination)
                .await?;
            Ok(json(
                StatusCode::OK,
                serde_json::json!({"removed": {"leistung": leistung, "destination": destination}, "by": op.id}),
            ))
        }
        (&Method::GET, ["targets", id]) if segment(id).is_some() => {
            query(head, &[])?;
            let t = ops.target(op, id).await?;
            Ok(json(
                StatusCode::OK,
                serde_json::to_value(t).unwrap_or_default(),
            ))
        }
        (&Method::POST, ["targets", id, verb @ ("pause" | "resume")]) if segment(id).is_some() => {
            let q = query(head, &["reason"])?;
            let mut reason = get(&q, "reason").map(str::to_owned);
            if reason.is_none() && !body.is_empty() {
                let b: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
                    Problem::bad_request("body-invalid", format!("the body is not JSON: {e}"))
                })?;
                reason = b["reason"].as_str().map(str::to_owned);
            }
            if reason.as_ref().is_some_and(|r| r.chars().count() > 200) {
                return Err(Problem::bad_request(
                    "reason-too-long",
                    "a reason holds at most 200 characters (and no personal data)",
                ));
            }
            let pause = (*verb == "pause").then_some(reason);
            let t = ops.pause(op, id, pause).await?;
            Ok(json(
                StatusCode::OK,
                serde_json::to_value(t).unwrap_or_default(),
            ))
        }
        (&Method::POST, ["targets", id, "parked", verb @ ("retry" | "discard")])
            if segment(id).is_some() =>
        {
            let q = query(head, &["all"])?;
            if get(&q, "all") != Some("true") {
                return Err(Problem::bad_request(
                    "bulk-needs-flag",
                    format!(
                        "this would {verb} every parked delivery of {id}; say so with ?all=true"
                    ),
                ));
            }
            let action = if *verb == "retry" {
                Action::Retry
            } else {
                Action::Discard
            };
            let touched = ops.act_on_parked(op, id, action).await?;
            Ok(json(
                StatusCode::OK,
                serde_json::json!({"target": id, "action": verb, "touched": touched, "by": op.id}),
            ))
        }
        (&Method::GET, ["deliveries"]) => {
            let q = query(
                head,
                &[
                    "state",
                    "target",
                    "leistung",
                    "older_than",
                    "after",
                    "limit",
                ],
            )?;
            let mut dq = DeliveryQuery {
                limit: PAGE_DEFAULT,
                ..Default::default()
            };
            for (name, v) in &q {
                match *name {
                    "state" => {
                        dq.state = Some(DeliveryState::parse(v).ok_or_else(|| {
                            Problem::bad_request(
                                "query-invalid",
                                format!("unknown state {v:?}; states: pending, in_flight, retry_wait, parked, delivered, discarded"),
                            )
                        })?)
                    }
                    "target" => dq.targets = Some(vec![v.clone()]),
                    "leistung" => dq.leistung = Some(v.clone()),
                    "older_than" => {
                        let age = humantime::parse_duration(v).map_err(|e| {
                            Problem::bad_request(
                                "query-invalid",
                                format!("older_than: {e} (e.g. 30m, 2h, 1d)"),
                            )
                        })?;
                        let ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
                        dq.created_before_ms = Some(now_ms().saturating_sub(ms));
                    }
                    "after" => dq.after = Some(v.clone()),
                    "limit" => {
                        dq.limit = v
                            .parse::<usize>()
                            .ok()
                            .filter(|n| (1..=PAGE_MAX).contains(n))
                            .ok_or_else(|| {
                                Problem::bad_request(
                                    "query-invalid",
                                    format!("limit is a number from 1 to {PAGE_MAX}"),
                                )
                            })?
                    }
                    _ => {}
                }
            }
            let page = ops.deliveries(op, dq).await?;
            Ok(json(
                StatusCode::OK,
                serde_json::to_value(page).unwrap_or_default(),
            ))
        }
        (&Method::POST, ["deliveries", id, verb]) if segment(id).is_some() => {
            query(head, &[])?;
            let Some(action) = Action::parse(verb) else {
                return Err(not_found(method, path));
            };
            let done = ops.act(op, id, action).await?;
            Ok(json(
                StatusCode::OK,
                serde_json::json!({"message_id": id, "target": done.target, "state": done.state, "by": op.id}),
            ))
        }
        (&Method::GET, ["stats"]) => {
            let q = query(head, &["period", "by", "from", "to", "format"])?;
            let sq = StatsQuery::parse(
                get(&q, "period"),
                get(&q, "by"),
                get(&q, "from"),
                get(&q, "to"),
            )?;
            let accept_csv = head
                .headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/csv"));
            let csv = match get(&q, "format") {
                None => accept_csv,
                Some("csv") => true,
                Some("json") => false,
                Some(f) => {
                    return Err(Problem::bad_request(
                        "query-invalid",
                        format!("format {f:?}: json or csv"),
                    ))
                }
            };
            let stats = ops.stats(op, &sq).await?;
            Ok(if csv {
                text(StatusCode::OK, "text/csv; charset=utf-8", stats.csv())
            } else {
                json(
                    StatusCode::OK,
                    serde_json::to_value(stats).unwrap_or_default(),
                )
            })
        }
        (&Method::GET, ["submissions", id]) if segment(id).is_some() => {
            query(head, &[])?;
            let s = ops.submission(op, id).await?;
            Ok(json(
                StatusCode::OK,
                serde_json::to_value(s).unwrap_or_default(),
            ))
        }
        _ => Err(not_found(method, path)),
    }
}

/// The metrics text without the series whose `target`, `portal` or
/// `certificate` label `keep` refuses (an operator of some tenants sees only
/// theirs).
pub(super) fn scoped_metrics(text: &str, keep: impl Fn(&str, &str) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if !line.starts_with('#') {
            if let Some(labels) = line
                .split_once('{')
                .and_then(|(_, rest)| rest.split_once('}'))
                .map(|(l, _)| l)
            {
                let refused = ["target", "portal", "certificate"]
                    .iter()
                    .any(|name| label(labels, name).is_some_and(|value| !keep(name, &value)));
                if refused {
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The value of label `name` in `a="x",b="y"` (values as the exposition
/// format escapes them: `\"`, `\\`, `\n`).
fn label(labels: &str, name: &str) -> Option<String> {
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        if key.trim_start_matches(',').trim() == name {
            return Some(value);
        }
        rest = after[end..].trim_start_matches(',');
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded_and_bad_encodings_refused() {
        assert_eq!(decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(decode("%C3%A4").as_deref(), Some("ä"));
        assert_eq!(decode("%"), None);
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("%ZZ"), None);
        assert_eq!(decode("%FF"), None);
    }

    #[test]
    fn scoped_metrics_drop_the_series_of_targets_and_portals_not_seen() {
        let text = "# TYPE ozg_x gauge\nozg_x{target=\"mine\",state=\"parked\"} 1\nozg_x{state=\"parked\",target=\"theirs\"} 2\nozg_y{portal=\"p\\\"q\"} 3\nozg_up 1\nozg_c{certificate=\"target:theirs\"} 4\n";
        let out = scoped_metrics(text, |name, v| match name {
            "target" => v == "mine",
            _ => v == "p\"q",
        });
        assert_eq!(
            out,
            "# TYPE ozg_x gauge\nozg_x{target=\"mine\",state=\"parked\"} 1\nozg_y{portal=\"p\\\"q\"} 3\nozg_up 1\n"
        );
    }
}
