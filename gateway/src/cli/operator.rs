//! The operator's commands over the operator API (postqueue in spirit):
//! `queue list|show|retry|park|discard`, `target list|show|pause|resume`,
//! `status`, `reload` — tables for people, `--json` for scripts, and exit
//! codes scripts can rely on ([`Exit`]). Where they find the admin listener
//! and the operator's certificate: flags, environment, an operator settings
//! file, the gateway's config.

use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use super::args::{OperatorArgs, QueueAction, QueueCommand, StatsArgs, TargetCommand};

/// The exit codes of the operator commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    /// Done; `status`: nothing needs attention.
    Ok = 0,
    /// The gateway refused (a wrong state, not allowed); `status`: something
    /// needs attention.
    Refused = 1,
    /// No such delivery, submission or target (or not yours to see).
    NotFound = 3,
    /// The gateway cannot be reached, or failed (5xx).
    Unreachable = 4,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

impl Exit {
    fn of(status: u16) -> Exit {
        match status {
            200..=299 => Exit::Ok,
            404 => Exit::NotFound,
            500.. => Exit::Unreachable,
            _ => Exit::Refused,
        }
    }

    /// The worse of two (for several actions in one command).
    fn max(self, other: Exit) -> Exit {
        if (other as u8) > (self as u8) {
            other
        } else {
            self
        }
    }
}

/// The server's explanation of a refusal: its problem detail, else the status.
pub(super) fn refusal(status: u16, body: &Value) -> String {
    match body["detail"].as_str() {
        Some(d) => format!("{status} {d}"),
        None => format!("HTTP {status}"),
    }
}

/// Percent-encodes a query value or path segment.
pub(super) fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prints what a GET answered (JSON or by `table`); the exit code.
pub(super) fn shown(
    answer: Result<(u16, Value), String>,
    json: bool,
    table: impl Fn(&Value),
) -> ExitCode {
    match answer {
        Ok((200, body)) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&body).unwrap_or_default()
                );
            } else {
                table(&body);
            }
            Exit::Ok.into()
        }
        Ok((status, body)) => {
            eprintln!("refused: {}", refusal(status, &body));
            Exit::of(status).into()
        }
        Err(e) => {
            eprintln!("{e}");
            Exit::Unreachable.into()
        }
    }
}

pub(super) fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("-")
}

/// A breaker as one word and, when not closed, since/until.
fn breaker_word(b: &Value) -> String {
    match b["state"].as_str() {
        Some("open") => format!("OPEN until {}", s(b, "paused_until")),
        Some("half-open") => "probing".into(),
        _ => "closed".into(),
    }
}

fn print_targets(targets: &[Value]) {
    println!(
        "{:<22} {:<10} {:>8} {:>8} {:>8} {:>8}  {:<22} {:<10} {:<24} last error",
        "target",
        "tenant",
        "pending",
        "retry",
        "parked",
        "flight",
        "breaker",
        "paused",
        "oldest waiting"
    );
    for t in targets {
        let q = |k: &str| t["queue"][k].as_u64().unwrap_or(0);
        println!(
            "{:<22} {:<10} {:>8} {:>8} {:>8} {:>8}  {:<22} {:<10} {:<24} {}",
            s(t, "id"),
            s(t, "tenant"),
            q("pending"),
            q("retry_wait"),
            q("parked"),
            q("in_flight"),
            breaker_word(&t["breaker"]),
            if t["paused"].is_object() {
                "PAUSED"
            } else {
                "no"
            },
            s(t, "oldest_waiting_at"),
            t["last_error"].as_str().unwrap_or("")
        );
    }
}

fn print_deliveries(rows: &[Value]) {
    println!(
        "{:<38} {:<20} {:<10} {:>8}  {:<16} {:<26} last error",
        "message_id", "target", "state", "attempts", "leistung", "next attempt"
    );
    for d in rows {
        println!(
            "{:<38} {:<20} {:<10} {:>8}  {:<16} {:<26} {}",
            s(d, "message_id"),
            s(d, "target"),
            s(d, "state"),
            d["attempts"].as_u64().unwrap_or(0),
            s(d, "leistung"),
            s(d, "next_attempt_at"),
            d["last_error"].as_str().unwrap_or("")
        );
    }
}

/// `queue …`
pub(super) fn queue(command: QueueCommand) -> anyhow::Result<ExitCode> {
    match command {
        QueueCommand::List {
            state,
            target,
            leistung,
            older_than,
            limit,
            json,
            op,
        } => {
            let op = op.resolve()?;
            let one = [state.as_str()];
            let states: &[&str] = match state.as_str() {
                "queue" => &["pending", "in_flight", "retry_wait", "parked"],
                "waiting" => &["pending", "retry_wait"],
                "all" => &[""],
                _ => &one,
            };
            let mut rows: Vec<Value> = Vec::new();
            for st in states {
                let mut after: Option<String> = None;
                while rows.len() < limit {
                    let mut path = format!(
                        "/admin/v1/deliveries?limit={}",
                        (limit - rows.len()).min(crate::core::operator::PAGE_MAX)
                    );
                    for (k, v) in [
                        ("state", (!st.is_empty()).then_some(*st)),
                        ("target", target.as_deref()),
                        ("leistung", leistung.as_deref()),
                        ("older_than", older_than.as_deref()),
                        ("after", after.as_deref()),
                    ] {
                        if let Some(v) = v {
                            path.push_str(&format!("&{k}={}", enc(v)));
                        }
                    }
                    match op.get(&path) {
                        Ok((200, body)) => {
                            rows.extend(body["deliveries"].as_array().cloned().unwrap_or_default());
                            match body["next"].as_str() {
                                Some(n) => after = Some(n.to_owned()),
                                None => break,
                            }
                        }
                        other => return Ok(shown(other, json, |_| {})),
                    }
                }
            }
            rows.sort_by(|a, b| s(a, "message_id").cmp(s(b, "message_id")));
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "deliveries": rows }))?
                );
            } else {
                print_deliveries(&rows);
            }
            Ok(Exit::Ok.into())
        }
        QueueCommand::Show {
            submission_id,
            json,
            op,
        } => {
            let op = op.resolve()?;
            let answer = op.get(&format!("/admin/v1/submissions/{}", enc(&submission_id)));
            Ok(shown(answer, json, |body| {
                for k in [
                    "submission_id",
                    "portal",
                    "leistung",
                    "destination",
                    "received_at",
                ] {
                    println!("{:<14} {}", k.replace('_', " "), s(body, k));
                }
                println!();
                print_deliveries(
                    body["deliveries"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                );
                println!("\nLaufzettel:");
                for r in body["laufzettel"].as_array().into_iter().flatten() {
                    println!(
                        "  {:>8}  {}  {:<16} {}",
                        r["seq"],
                        s(r, "ts"),
                        s(r, "event"),
                        r["target"].as_str().unwrap_or("")
                    );
                }
            }))
        }
        QueueCommand::Retry(a) => act("retry", a),
        QueueCommand::Park(a) => act("park", a),
        QueueCommand::Discard(a) => act("discard", a),
    }
}

fn act(verb: &str, a: QueueAction) -> anyhow::Result<ExitCode> {
    if a.message_ids.is_empty() && !a.all_parked {
        anyhow::bail!("name the deliveries (message ids), or --target T --all-parked");
    }
    let op = a.op.resolve()?;
    if a.all_parked {
        let target = a.target.unwrap_or_default();
        if verb == "park" {
            anyhow::bail!("--all-parked goes with retry or discard");
        }
        let answer = op.post(&format!(
            "/admin/v1/targets/{}/parked/{verb}?all=true",
            enc(&target)
        ));
        return Ok(shown(answer, a.json, |b| {
            println!(
                "{target}: {verb} of every parked delivery: {} touched",
                b["touched"]
            )
        }));
    }
    let mut exit = Exit::Ok;
    let mut done = Vec::new();
    for id in &a.message_ids {
        match op.post(&format!("/admin/v1/deliveries/{}/{verb}", enc(id))) {
            Ok((200, body)) => {
                if !a.json {
                    println!(
                        "{id}: {} (target {})",
                        match verb {
                            "retry" => "due now",
                            "park" => "parked",
                            _ => "discarded; its sealed envelope is deleted",
                        },
                        s(&body, "target")
                    );
                }
                done.push(body);
            }
            Ok((status, body)) => {
                exit = exit.max(Exit::of(status));
                eprintln!("{id}: {verb} refused: {}", refusal(status, &body));
            }
            Err(e) => {
                exit = exit.max(Exit::Unreachable);
                eprintln!("{id}: {e}");
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    }
    Ok(exit.into())
}

/// `target …`
pub(super) fn target(command: TargetCommand) -> anyhow::Result<ExitCode> {
    match command {
        TargetCommand::List { json, op } => {
            let op = op.resolve()?;
            Ok(shown(op.get("/admin/v1/targets"), json, |b| {
                print_targets(
                    b["targets"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                )
            }))
        }
        TargetCommand::Show { id, json, op } => {
            let op = op.resolve()?;
            let answer = op.get(&format!("/admin/v1/targets/{}", enc(&id)));
            Ok(shown(answer, json, |t| {
                print_targets(std::slice::from_ref(t))
            }))
        }
        TargetCommand::Pause {
            id,
            reason,
            json,
            op,
        } => {
            let op = op.resolve()?;
            let mut path = format!("/admin/v1/targets/{}/pause", enc(&id));
            if let Some(r) = &reason {
                path.push_str(&format!("?reason={}", enc(r)));
            }
            Ok(shown(op.post(&path), json, |t| {
                println!(
                    "{}: paused by {}; deliveries wait until `ozg-gateway target resume {}`",
                    s(t, "id"),
                    s(&t["paused"], "by"),
                    s(t, "id")
                )
            }))
        }
        TargetCommand::Test { id, json, op } => super::registry::test(&id, json, op),
        TargetCommand::Add(a) => super::registry::add(a),
        TargetCommand::Remove { id, json, op } => super::registry::remove(&id, json, op),
        TargetCommand::Resume { id, json, op } => {
            let op = op.resolve()?;
            let answer = op.post(&format!("/admin/v1/targets/{}/resume", enc(&id)));
            Ok(shown(answer, json, |t| {
                println!("{}: delivering again", s(t, "id"))
            }))
        }
    }
}

/// `status`: exit 0 when nothing needs attention.
pub(super) fn status(json: bool, op: OperatorArgs) -> anyhow::Result<ExitCode> {
    let op = op.resolve()?;
    let answer = match op.get("/admin/v1/status") {
        Ok((200, body)) => body,
        other => return Ok(shown(other, json, |_| {})),
    };
    let parked = answer["queue"]["parked"].as_u64().unwrap_or(0);
    let empty = Vec::new();
    let paused = answer["paused"].as_array().unwrap_or(&empty);
    let open = answer["breakers_open"].as_array().unwrap_or(&empty);
    let ready = answer["ready"] == true;
    let attention = !ready || parked > 0 || !paused.is_empty() || !open.is_empty();
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!(
            "ozg-gateway {} at {}: {}",
            s(&answer, "version"),
            op.url,
            if ready {
                "ready".to_owned()
            } else {
                format!("NOT READY: {}", s(&answer, "not_ready_because"))
            }
        );
        println!("operator     {}", s(&answer["operator"], "id"));
        let q = |k: &str| answer["queue"][k].as_u64().unwrap_or(0);
        println!(
            "queue        {} pending, {} in flight, {} waiting for a retry, {} parked; {} delivered",
            q("pending"),
            q("in_flight"),
            q("retry_wait"),
            parked,
            q("delivered")
        );
        if let Some(secs) = answer["oldest_waiting_seconds"].as_u64() {
            println!("oldest wait  {secs} s");
        }
        let list = |v: &Vec<Value>| {
            v.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !paused.is_empty() {
            println!("paused       {}", list(paused));
        }
        if !open.is_empty() {
            println!("failing      {} (circuit breaker open)", list(open));
        }
        if parked > 0 {
            println!("parked deliveries wait for you: ozg-gateway queue list --state parked");
        }
    }
    Ok(if attention { Exit::Refused } else { Exit::Ok }.into())
}

/// `reload`: asks the admin listener of the daemon that runs with `config`.
pub(super) fn reload(config: &Path) -> anyhow::Result<ExitCode> {
    if let Err(e) = crate::config::Config::load(config) {
        eprintln!("reload refused, nothing was sent to the daemon; the config in force stays: {e}");
        return Ok(ExitCode::FAILURE);
    }
    let op = OperatorArgs {
        operator_config: None,
        url: std::env::var("OZG_ADMIN_URL").ok(),
        config: config.to_owned(),
        cert: std::env::var_os("OZG_OPERATOR_CERT").map(Into::into),
        key: std::env::var_os("OZG_OPERATOR_KEY").map(Into::into),
        ca: std::env::var_os("OZG_GATEWAY_CA").map(Into::into),
    }
    .resolve()?;
    match op.post("/reload") {
        Ok((200, body)) => {
            println!("reloaded: {}", serde_json::to_string_pretty(&body)?);
            Ok(ExitCode::SUCCESS)
        }
        Ok((_, body)) => {
            eprintln!(
                "reload refused: {}",
                body["detail"].as_str().unwrap_or("(no detail)")
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("{e}; is the daemon running with {}?", config.display());
            Ok(Exit::Unreachable.into())
        }
    }
}

/// `stats`: the case statistics as a table, CSV or JSON.
pub(super) fn stats(a: StatsArgs) -> anyhow::Result<ExitCode> {
    let op = a.op.resolve()?;
    let mut path = format!("/admin/v1/stats?period={}", enc(&a.period));
    if !a.by.is_empty() {
        path.push_str(&format!("&by={}", enc(&a.by)));
    }
    for (k, v) in [("from", &a.from), ("to", &a.to)] {
        if let Some(v) = v {
            path.push_str(&format!("&{k}={}", enc(v)));
        }
    }
    if a.csv {
        path.push_str("&format=csv");
    }
    let answer = op.get(&path);
    if a.csv {
        if let Ok((200, Value::String(csv))) = &answer {
            print!("{csv}");
            return Ok(Exit::Ok.into());
        }
    }
    Ok(shown(answer, a.json, |body| {
        let by: Vec<&str> = body["by"]
            .as_array()
            .map(|b| b.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let secs = |v: &Value| v.as_f64().map(|s| format!("{s:.1}")).unwrap_or("-".into());
        let head = ["period"].iter().chain(&by).chain(&[
            "accepted",
            "delivered",
            "parked",
            "discarded",
            "median_s",
            "p95_s",
        ]);
        let mut table: Vec<Vec<String>> = vec![head.map(|h| h.to_uppercase()).collect()];
        let row = |label: String, dims: Vec<String>, c: &Value| {
            let n = |k: &str| c[k].as_u64().unwrap_or(0).to_string();
            [
                vec![label],
                dims,
                vec![
                    n("accepted"),
                    n("delivered"),
                    n("parked"),
                    n("discarded"),
                    secs(&c["delivery_median_seconds"]),
                    secs(&c["delivery_p95_seconds"]),
                ],
            ]
            .concat()
        };
        for r in body["rows"].as_array().into_iter().flatten() {
            let dims = by
                .iter()
                .map(|d| r[*d].as_str().unwrap_or("-").to_owned())
                .collect();
            table.push(row(s(r, "period").to_owned(), dims, r));
        }
        table.push(row(
            "total".into(),
            by.iter().map(|_| String::new()).collect(),
            &body["totals"],
        ));
        let widths: Vec<usize> = (0..table[0].len())
            .map(|i| {
                table
                    .iter()
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        println!(
            "case statistics {} to {} by {} ({})",
            s(body, "from"),
            s(body, "to"),
            s(body, "period"),
            s(body, "time_zone")
        );
        for r in &table {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("{}", cells.join("  ").trim_end());
        }
    }))
}
