//! The query both stores answer case statistics with (see `model::cases`):
//! one period's counters in a range, summed over what is not grouped by, in
//! the database, for the portals and targets the operator sees.

use crate::model::cases::{histogram_columns, CaseQuery};

/// The SELECT of a [`CaseQuery`] with placeholders `{p}1` … `{p}6` (period,
/// from, to, portals as JSON, targets as JSON, limit), and those two lists.
pub fn query_sql(q: &CaseQuery, p: &str) -> (String, Option<String>, Option<String>) {
    let column = |c: &str| {
        if q.group.contains(&c) {
            c.to_owned()
        } else {
            format!("'' AS {c}")
        }
    };
    let grouped: Vec<&str> = ["leistung", "destination", "portal", "target"]
        .into_iter()
        .filter(|c| q.group.contains(c))
        .collect();
    let list = |l: &Option<Vec<String>>| {
        l.as_ref()
            .map(|v| serde_json::to_string(v).unwrap_or_default())
    };
    let (json_each, cast) = if p == "$" {
        ("jsonb_array_elements_text", "::jsonb")
    } else {
        ("json_each", "")
    };
    let member = |col: &str, n: u8| {
        if p == "$" {
            format!("({p}{n}::text IS NULL OR {col} IN (SELECT {json_each}({p}{n}{cast})))")
        } else {
            format!("({p}{n} IS NULL OR {col} IN (SELECT value FROM {json_each}({p}{n})))")
        }
    };
    let sql = format!(
        "SELECT start, event, {leistung}, {destination}, {portal}, {target}, CAST(sum(n) AS BIGINT)
         FROM case_counts
         WHERE period = {p}1 AND start >= {p}2 AND start < {p}3
           AND ((event IN ('accepted', 'replied') AND {portals}) OR (event NOT IN ('accepted', 'replied') AND {targets}))
         GROUP BY start, event{comma}{grouped}
         LIMIT {p}6",
        leistung = column("leistung"),
        destination = column("destination"),
        portal = column("portal"),
        target = column("target"),
        portals = member("portal", 4),
        targets = member("target", 5),
        comma = if grouped.is_empty() { "" } else { ", " },
        grouped = grouped.join(", "),
    );
    (sql, list(&q.portals), list(&q.targets))
}

/// The histograms of a period range, for the targets in `{p}4` (JSON; NULL: all).
pub fn latency_sql(p: &str) -> String {
    let targets = if p == "$" {
        "($4::text IS NULL OR target IN (SELECT jsonb_array_elements_text($4::jsonb)))".to_owned()
    } else {
        format!("({p}4 IS NULL OR target IN (SELECT value FROM json_each({p}4)))")
    };
    format!(
        "SELECT start, leistung, target, {} FROM case_latency
         WHERE period = {p}1 AND start >= {p}2 AND start < {p}3 AND {targets}",
        histogram_columns("", "")
    )
}
