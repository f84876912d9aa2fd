//! The operator API on the portal listener (operators' client certificates):
//!
//! - `GET /v1/admin/deliveries?state=parked[&target=T]`
//! - `POST /v1/admin/deliveries/{message_id}/retry` and `/discard`

use http::{Method, StatusCode};

use super::{json_response, HttpResponse, Ingest};
use crate::listen::problem::Problem;
use crate::model::delivery::{Action, DeliveryState};

impl Ingest {
    /// The operator API: list deliveries by state; retry or discard one.
    ///
    /// - `GET /v1/admin/deliveries?state=parked[&target=T]`
    /// - `POST /v1/admin/deliveries/{message_id}/retry` and `/discard`
    pub(super) async fn operate(
        &self,
        operator: &str,
        head: &http::request::Parts,
    ) -> Result<HttpResponse, Problem> {
        let path = head.uri.path();
        if let Some(id) = path.strip_prefix("/v1/admin/submissions/") {
            if head.method != Method::GET || id.is_empty() || id.contains('/') {
                return Err(Problem::new(
                    404,
                    "not-found",
                    format!("no operator resource {} {path}", head.method),
                ));
            }
            let (status, breakers) = self.operations.submission(id).await?;
            let mut body = serde_json::to_value(&status).unwrap_or_default();
            body["portal"] = status.portal.clone().into();
            body["breakers"] = breakers_json(breakers);
            return Ok(json_response(StatusCode::OK, body.to_string()));
        }
        let Some(rest) = path.strip_prefix("/v1/admin/deliveries") else {
            return Err(Problem::new(
                404,
                "not-found",
                format!("no operator resource at {path}"),
            ));
        };
        if head.method == Method::GET && rest.is_empty() {
            let mut state = DeliveryState::Parked;
            let mut target = None;
            for pair in head
                .uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
            {
                match pair.split_once('=') {
                    Some(("state", v)) => {
                        state = DeliveryState::parse(v).ok_or_else(|| {
                            Problem::bad_request("query-invalid", format!("unknown state {v:?}"))
                        })?
                    }
                    Some(("target", v)) => target = Some(v.to_owned()),
                    _ => {
                        return Err(Problem::bad_request(
                            "query-invalid",
                            "allowed are state= and target=",
                        ))
                    }
                }
            }
            let rows = self.operations.deliveries(state, target.as_deref()).await?;
            let breakers = self
                .operations
                .breakers()
                .into_iter()
                .filter(|(t, _)| target.as_deref().is_none_or(|want| want == t))
                .collect();
            return Ok(json_response(
                StatusCode::OK,
                serde_json::json!({ "deliveries": rows, "breakers": breakers_json(breakers) })
                    .to_string(),
            ));
        }
        let action = match (&head.method, rest.rsplit_once('/')) {
            (&Method::POST, Some((id, "retry"))) => (id, Action::Retry),
            (&Method::POST, Some((id, "discard"))) => (id, Action::Discard),
            _ => {
                return Err(Problem::new(
                    404,
                    "not-found",
                    format!("no operator resource {} {path}", head.method),
                ))
            }
        };
        let (message_id, action) = (action.0.trim_start_matches('/'), action.1);
        if message_id.is_empty() || message_id.contains('/') {
            return Err(Problem::new(
                404,
                "not-found",
                format!("no operator resource at {path}"),
            ));
        }
        let done = self.operations.act(message_id, action, operator).await?;
        Ok(json_response(
            StatusCode::OK,
            serde_json::json!({"message_id": message_id, "target": done.target, "state": done.state, "by": operator})
                .to_string(),
        ))
    }
}

/// Breakers by target id: `{"dms": {"state": "open", …}}`.
fn breakers_json(views: Vec<(String, crate::core::engine::BreakerView)>) -> serde_json::Value {
    serde_json::Value::Object(
        views
            .into_iter()
            .map(|(t, v)| (t, serde_json::to_value(v).unwrap_or_default()))
            .collect(),
    )
}
