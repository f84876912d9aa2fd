//! Case statistics (Fallzahlen) as operators ask for them: submissions and
//! delivery outcomes per period, grouped by Leistung, destination, tenant,
//! portal or target, with the median and 95th percentile of the time from
//! acceptance to delivery. Read from the store's counters (see
//! `model::cases`), never from the history, and only ids and counts: no
//! content, no file names, nothing about the applicant.
//!
//! An operator sees the submissions of their tenants' portals and the
//! outcomes of their tenants' targets (a vendor: of their targets only).
//! `accepted` is counted per submission, outcomes per delivery: a submission
//! routed to two targets is one accepted and two delivered.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::operator::Operations;
use crate::core::refusal::Refusal;
use crate::model::cases::{
    parse_date, CaseCount, CaseCounts, CaseQuery, Period, HISTOGRAM, LATENCY_BOUNDS,
};
use crate::model::portal::Operator;
use crate::model::time::now_ms;

/// What statistics can be grouped by.
pub const DIMENSIONS: [&str; 5] = ["leistung", "destination", "tenant", "portal", "target"];
/// The longest range a query covers, in days (hours: 31 days).
const MAX_DAYS: i64 = 3700;
/// Most rows one answer holds (more: narrow the query).
pub const MAX_ROWS: usize = 100_000;
const MAX_HOUR_DAYS: i64 = 31;

/// A statistics query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    pub period: Period,
    /// Some of [`DIMENSIONS`], in the order asked.
    pub by: Vec<&'static str>,
    /// First and last local day (inclusive); `None`: the period's default range.
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl StatsQuery {
    /// From the query string's values: `period`, `by` (comma-separated),
    /// `from`, `to` (`YYYY-MM-DD`).
    pub fn parse(
        period: Option<&str>,
        by: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<StatsQuery, Refusal> {
        let invalid = |detail: String| Refusal::invalid("query-invalid", detail);
        let period = match period {
            None => Period::Day,
            Some(p) => Period::parse(p)
                .ok_or_else(|| invalid(format!("period {p:?}: one of hour, day, week, month")))?,
        };
        let mut dims = Vec::new();
        for d in by.unwrap_or_default().split(',').filter(|d| !d.is_empty()) {
            let Some(dim) = DIMENSIONS.iter().find(|x| **x == d) else {
                return Err(invalid(format!(
                    "by {d:?}: one or more of {}",
                    DIMENSIONS.join(", ")
                )));
            };
            if dims.contains(dim) {
                return Err(invalid(format!("by names {d} twice")));
            }
            if period == Period::Hour && matches!(*dim, "leistung" | "destination") {
                return Err(invalid(format!(
                    "hourly counts are kept per portal and target only; group by {d} with period day, week or month"
                )));
            }
            dims.push(*dim);
        }
        let date = |name: &str, v: Option<&str>| {
            v.map(|s| {
                parse_date(s).ok_or_else(|| invalid(format!("{name} {s:?}: a date YYYY-MM-DD")))
            })
            .transpose()
        };
        let q = StatsQuery {
            period,
            by: dims,
            from: date("from", from)?,
            to: date("to", to)?,
        };
        if let (Some(f), Some(t)) = (q.from, q.to) {
            if f > t {
                return Err(invalid("from is after to".into()));
            }
            let max = if period == Period::Hour {
                MAX_HOUR_DAYS
            } else {
                MAX_DAYS
            };
            if t - f >= max {
                return Err(invalid(format!(
                    "a query covers at most {max} days with period {}",
                    period.as_str()
                )));
            }
        }
        Ok(q)
    }

    /// The days asked for (inclusive), defaults filled in from `today`: the
    /// last 2 days by hour, 31 by day, 13 weeks, 12 months.
    pub fn range(&self, today: i64) -> (i64, i64) {
        let to = self.to.unwrap_or(today);
        let from = self.from.unwrap_or(match self.period {
            Period::Hour => to - 1,
            Period::Day => to - 30,
            Period::Week => Period::Week.start_of_day(to) - 12 * 7,
            Period::Month => {
                let mut m = Period::Month.start_of_day(to);
                for _ in 0..11 {
                    m = Period::Month.start_of_day(m - 1);
                }
                m
            }
        });
        (from.min(to), to)
    }
}

/// One row of the answer: a period and the values of the dimensions asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatsRow {
    pub period: String,
    /// The period's first day (`YYYY-MM-DD`; for hours, their day).
    pub start: String,
    /// The dimensions asked for, in order (`None`: does not apply, e.g. the
    /// target of `accepted`, or the tenant of something without one).
    #[serde(flatten)]
    pub dims: BTreeMap<&'static str, Option<String>>,
    #[serde(flatten)]
    pub counts: Counts,
}

/// Counts and delivery times of a row (or of all rows).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    pub accepted: u64,
    pub delivered: u64,
    pub parked: u64,
    pub discarded: u64,
    /// Replies of the targets (Bescheide and other answers) accepted, by the
    /// answered submission's Leistung, destination and portal.
    pub replied: u64,
    /// Median time from acceptance to delivery (seconds), estimated inside
    /// its bucket of a histogram (a 1-2-5 series from 10 ms to 100,000 s).
    /// Times are kept per Leistung and target: a row grouped by destination
    /// or portal gets the mix of its Leistungen's and targets' times,
    /// weighted by its deliveries.
    pub delivery_median_seconds: Option<f64>,
    pub delivery_p95_seconds: Option<f64>,
    #[serde(skip)]
    histogram: [f64; HISTOGRAM],
}

impl Counts {
    /// Adds a row; `times` is the histogram of its Leistung and target in
    /// its period and how many deliveries it holds.
    fn add(&mut self, c: &CaseCount, times: Option<&([u64; HISTOGRAM], u64)>) {
        match c.event.as_str() {
            "accepted" => self.accepted += c.n,
            "delivered" => {
                self.delivered += c.n;
                if let Some((h, total)) = times.filter(|(_, t)| *t > 0) {
                    let share = c.n as f64 / *total as f64;
                    for (mine, n) in self.histogram.iter_mut().zip(h) {
                        *mine += share * *n as f64;
                    }
                }
            }
            "parked" => self.parked += c.n,
            "discarded" => self.discarded += c.n,
            "replied" => self.replied += c.n,
            _ => {}
        }
    }

    fn finish(&mut self) {
        self.delivery_median_seconds = quantile(&self.histogram, 0.5);
        self.delivery_p95_seconds = quantile(&self.histogram, 0.95);
    }
}

/// The `q`-quantile of a histogram over [`LATENCY_BOUNDS`], in seconds,
/// interpolated linearly inside its bucket (the open last bucket: its
/// lower bound).
fn quantile(histogram: &[f64; HISTOGRAM], q: f64) -> Option<f64> {
    let total: f64 = histogram.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut seen = 0.0;
    for (i, &n) in histogram.iter().enumerate() {
        if n > 0.0 && seen + n >= rank * (1.0 - 1e-12) {
            let lower = if i == 0 { 0 } else { LATENCY_BOUNDS[i - 1] };
            let Some(&upper) = LATENCY_BOUNDS.get(i) else {
                return Some(lower as f64 / 1000.0);
            };
            let within = ((rank - seen) / n).clamp(0.0, 1.0);
            let ms = lower as f64 + within * (upper - lower) as f64;
            return Some(ms.round() / 1000.0);
        }
        seen += n;
    }
    None
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub period: &'static str,
    pub from: String,
    pub to: String,
    pub time_zone: &'static str,
    pub by: Vec<&'static str>,
    pub rows: Vec<StatsRow>,
    pub totals: Counts,
}

impl Stats {
    /// As CSV (RFC 4180; a header row, one line per row). Cells that a
    /// spreadsheet would take for a formula are prefixed with `'`.
    pub fn csv(&self) -> String {
        let mut out = String::from("period,start");
        for d in &self.by {
            out.push(',');
            out.push_str(d);
        }
        out.push_str(
            ",accepted,delivered,parked,discarded,replied,delivery_median_seconds,delivery_p95_seconds\r\n",
        );
        let secs = |v: Option<f64>| v.map(|s| s.to_string()).unwrap_or_default();
        for r in &self.rows {
            let mut cells = vec![r.period.clone(), r.start.clone()];
            for d in &self.by {
                cells.push(r.dims.get(d).cloned().flatten().unwrap_or_default());
            }
            let c = &r.counts;
            cells.extend([
                c.accepted.to_string(),
                c.delivered.to_string(),
                c.parked.to_string(),
                c.discarded.to_string(),
                c.replied.to_string(),
                secs(c.delivery_median_seconds),
                secs(c.delivery_p95_seconds),
            ]);
            let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        }
        out
    }
}

fn csv_cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

fn date(day: i64) -> String {
    Period::Day.label(day)
}

impl Operations {
    /// The case statistics `op` may see.
    pub async fn stats(&self, op: &Operator, q: &StatsQuery) -> Result<Stats, Refusal> {
        let today = self.zone.day_of(now_ms());
        let (from, to) = q.range(today);
        let (lo, hi) = match q.period {
            Period::Hour => (from * 24, (to + 1) * 24),
            p => (p.start_of_day(from), to + 1),
        };
        let dir = self.directory.load_full();
        let mut group: Vec<&'static str> = Vec::new();
        for d in &q.by {
            let columns: &[&'static str] = match *d {
                "tenant" => &["portal", "target"],
                "leistung" => &["leistung"],
                "destination" => &["destination"],
                "portal" => &["portal"],
                _ => &["target"],
            };
            for c in columns {
                if !group.contains(c) {
                    group.push(c);
                }
            }
        }
        // Times to delivery are kept per Leistung and target: rows are read
        // apart by both to weigh them (and summed below).
        for c in ["leistung", "target"] {
            if !group.contains(&c) {
                group.push(c);
            }
        }
        let (portals, targets) = if op.sees_all() {
            (None, None)
        } else {
            let portals = dir.portals.keys().filter(|p| dir.sees_portal(op, p));
            let targets = dir.targets.keys().filter(|t| dir.sees(op, t));
            (
                Some(portals.cloned().collect()),
                Some(targets.cloned().collect()),
            )
        };
        let query = CaseQuery {
            period: q.period,
            from: lo,
            to: hi,
            group,
            portals,
            targets,
            // One store row per event kind of an answer's row.
            limit: 4 * MAX_ROWS + 1,
        };
        let rows = self.store.case_counts(query).await.map_err(|e| {
            tracing::error!(error = %e, "reading case statistics failed");
            Refusal::unavailable("the store cannot be reached right now; retry later")
        })?;
        let too_many = || {
            Refusal::new(
                crate::core::refusal::Kind::TooLarge,
                "too-many-rows",
                format!("the answer would hold more than {MAX_ROWS} rows: ask for a shorter range, a longer period or fewer dimensions"),
            )
        };
        if rows.counts.len() > 4 * MAX_ROWS {
            return Err(too_many());
        }
        let stats = aggregate(self, q, rows, (from, to));
        if stats.rows.len() > MAX_ROWS {
            return Err(too_many());
        }
        Ok(stats)
    }
}

fn aggregate(ops: &Operations, q: &StatsQuery, rows: CaseCounts, (from, to): (i64, i64)) -> Stats {
    let dir = ops.directory.load_full();
    let times: std::collections::HashMap<(i64, &str, &str), ([u64; HISTOGRAM], u64)> = rows
        .latency
        .iter()
        .map(|l| {
            let total = l.histogram.iter().sum();
            (
                (l.start, l.leistung.as_str(), l.target.as_str()),
                (l.histogram, total),
            )
        })
        .collect();
    let mut groups: BTreeMap<(i64, Vec<Option<String>>), Counts> = BTreeMap::new();
    let mut totals = Counts::default();
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    for c in &rows.counts {
        let accepted = c.event == "accepted";
        let key: Vec<Option<String>> =
            q.by.iter()
                .map(|d| match *d {
                    "leistung" => some(&c.leistung),
                    "destination" => some(&c.destination),
                    "portal" => some(&c.portal),
                    "target" => some(&c.target),
                    _ if accepted => dir.portals.get(&c.portal).cloned().flatten(),
                    _ => dir.tenant_of(&c.target).map(str::to_owned),
                })
                .collect();
        let t = times.get(&(c.start, c.leistung.as_str(), c.target.as_str()));
        groups.entry((c.start, key)).or_default().add(c, t);
        totals.add(c, t);
    }
    totals.finish();
    let rows = groups
        .into_iter()
        .map(|((start, key), mut counts)| {
            counts.finish();
            let first_day = if q.period == Period::Hour {
                start.div_euclid(24)
            } else {
                start
            };
            StatsRow {
                period: q.period.label(start),
                start: date(first_day),
                dims: q.by.iter().copied().zip(key).collect(),
                counts,
            }
        })
        .collect();
    Stats {
        period: q.period.as_str(),
        from: date(from),
        to: date(to),
        time_zone: ops.zone.name(),
        by: q.by.clone(),
        rows,
        totals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_checked() {
        let q = StatsQuery::parse(Some("week"), Some("leistung,destination"), None, None).unwrap();
        assert_eq!(q.by, vec!["leistung", "destination"]);
        for (p, by, f, t) in [
            (Some("year"), None, None, None),
            (None, Some("name"), None, None),
            (None, Some("leistung,leistung"), None, None),
            (Some("hour"), Some("leistung"), None, None),
            (None, None, Some("2026-13-01"), None),
            (None, None, Some("2026-11-02"), Some("2026-11-01")),
            (Some("hour"), None, Some("2026-01-01"), Some("2026-11-01")),
        ] {
            assert!(
                StatsQuery::parse(p, by, f, t).is_err(),
                "{p:?} {by:?} {f:?} {t:?}"
            );
        }
        let today = parse_date("2026-11-30").unwrap();
        let month = StatsQuery::parse(Some("month"), None, None, None).unwrap();
        assert_eq!(month.range(today).0, parse_date("2025-12-01").unwrap());
        let week = StatsQuery::parse(Some("week"), None, None, None).unwrap();
        assert_eq!(week.range(today), (today - 84, today));
    }

    #[test]
    fn quantiles_come_from_the_histogram() {
        use crate::model::cases::bucket_of;
        let mut h = [0f64; HISTOGRAM];
        // 90 deliveries within about a second, 10 after about a minute.
        h[bucket_of(900)] = 90.0;
        h[bucket_of(55_000)] = 10.0;
        let median = quantile(&h, 0.5).unwrap();
        assert!(median > 0.5 && median <= 1.0, "{median}");
        let p95 = quantile(&h, 0.95).unwrap();
        assert!(p95 > 50.0 && p95 <= 100.0, "{p95}");
        assert_eq!(quantile(&[0.0; HISTOGRAM], 0.5), None);
        let mut late = [0f64; HISTOGRAM];
        late[HISTOGRAM - 1] = 1.0;
        assert_eq!(quantile(&late, 0.5), Some(100_000.0));
    }

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_cell("99050012104000"), "99050012104000");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    }
}
