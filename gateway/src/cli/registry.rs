//! The operator commands that change targets and routes at run time:
//! `target add|remove|test`, `route list|add|remove` (over the operator API).

use std::process::ExitCode;

use serde_json::Value;

use super::args::{OperatorArgs, RouteCommand, TargetAdd};
use super::operator::{enc, s, shown, Exit};

/// `target test`: exit 0 only when the test message was delivered.
pub(super) fn test(id: &str, json: bool, op: OperatorArgs) -> anyhow::Result<ExitCode> {
    let op = op.resolve()?;
    let answer = op.post(&format!("/admin/v1/targets/{}/test", enc(id)));
    let delivered = matches!(&answer, Ok((200, b)) if b["outcome"] == "delivered");
    let code = shown(answer, json, |b| {
        println!(
            "{}: test message {} {} in {} ms ({} bytes){}",
            s(b, "target"),
            s(b, "message_id"),
            s(b, "outcome"),
            b["millis"],
            b["envelope_bytes"],
            b["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )
    });
    Ok(if code == ExitCode::from(Exit::Ok) && !delivered {
        Exit::Refused.into()
    } else {
        code
    })
}

/// `target add`.
pub(super) fn add(a: TargetAdd) -> anyhow::Result<ExitCode> {
    let certificate = std::fs::read_to_string(&a.certificate)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.certificate.display()))?;
    let adapter: Value = serde_json::from_str(&a.adapter)
        .map_err(|e| anyhow::anyhow!("--adapter is not JSON: {e}"))?;
    let mut body = serde_json::json!({"id": a.id, "certificate": certificate, "adapter": adapter});
    for (k, v) in [
        ("payload", &a.payload),
        ("tenant", &a.tenant),
        ("description", &a.description),
    ] {
        if let Some(v) = v {
            body[k] = v.as_str().into();
        }
    }
    let op = a.op.resolve()?;
    let answer = if a.replace {
        op.send(
            reqwest::Method::PUT,
            &format!("/admin/v1/targets/{}", enc(&a.id)),
            &body,
        )
    } else {
        op.send(reqwest::Method::POST, "/admin/v1/targets", &body)
    };
    let ok = |status: u16| status == 200 || status == 201;
    Ok(match answer {
        Ok((status, b)) if ok(status) => shown(Ok((200, b)), a.json, |b| {
            println!(
                "{}: registered by {}; test it with `ozg-gateway target test {}`",
                s(b, "id"),
                s(b, "registered_by"),
                s(b, "id")
            )
        }),
        other => shown(other, a.json, |_| {}),
    })
}

/// `target remove`.
pub(super) fn remove(id: &str, json: bool, op: OperatorArgs) -> anyhow::Result<ExitCode> {
    let op = op.resolve()?;
    let answer = op.call(
        reqwest::Method::DELETE,
        &format!("/admin/v1/targets/{}", enc(id)),
    );
    Ok(shown(answer, json, |_| println!("{id}: removed")))
}

/// `route …`
pub(super) fn route(command: RouteCommand) -> anyhow::Result<ExitCode> {
    match command {
        RouteCommand::List { json, op } => {
            let op = op.resolve()?;
            Ok(shown(op.get("/admin/v1/routes"), json, |b| {
                println!(
                    "{:<20} {:<14} {:<8} {:<12} targets",
                    "leistung", "destination", "origin", "tenant"
                );
                for r in b["routes"].as_array().into_iter().flatten() {
                    let targets: Vec<&str> = r["targets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    println!(
                        "{:<20} {:<14} {:<8} {:<12} {}",
                        s(r, "leistung"),
                        s(r, "destination"),
                        s(r, "origin"),
                        s(r, "tenant"),
                        targets.join(", ")
                    );
                }
            }))
        }
        RouteCommand::Add {
            leistung,
            destination,
            targets,
            tenant,
            json,
            op,
        } => {
            let op = op.resolve()?;
            let mut body = serde_json::json!({"leistung": leistung, "destination": destination, "targets": targets});
            if let Some(t) = tenant {
                body["tenant"] = t.into();
            }
            let answer = op.send(reqwest::Method::POST, "/admin/v1/routes", &body);
            Ok(match answer {
                Ok((201, b)) => shown(Ok((200, b)), json, |_| {
                    println!(
                        "route {leistung} {destination} → {} registered",
                        targets.join(", ")
                    )
                }),
                other => shown(other, json, |_| {}),
            })
        }
        RouteCommand::Remove {
            leistung,
            destination,
            json,
            op,
        } => {
            let op = op.resolve()?;
            let answer = op.call(
                reqwest::Method::DELETE,
                &format!(
                    "/admin/v1/routes?leistung={}&destination={}",
                    enc(&leistung),
                    enc(&destination)
                ),
            );
            Ok(shown(answer, json, |_| {
                println!("route {leistung} {destination} removed")
            }))
        }
    }
}
