//! Case statistics in the embedded store (see `model::cases`): counters kept
//! by triggers in the transaction of every change they count.
//!
//! ```text
//! case_counts(period, start, event, leistung, destination, portal, target, n)
//! case_latency(period, start, leistung, target, h0 … h22)
//!                                    deliveries in bucket i of the times to delivery
//! case_zone(from_ms, offset_ms)      the statistics' time zone: offset from UTC since from_ms
//! case_buckets(upper_ms)             the histogram's bucket bounds (model::cases::LATENCY_BOUNDS)
//! ```
//!
//! A submission's insert counts `accepted` at its `received_at`; a delivery
//! entering `delivered`, `parked` or `discarded` counts that outcome at its
//! `updated_ms`, `delivered` also in the histogram of its Leistung and
//! target, in the bucket of `updated_ms - created_at_ms`.
//! Each event adds one to its row of the hour, the day, the week and the
//! month it falls in (in the zone's local time).

use rusqlite::{params, Connection};

use crate::model::cases::{
    histogram_columns, CaseCount, CaseCounts, CaseLatency, CaseQuery, StatsZone, HISTOGRAM,
    LATENCY_BOUNDS,
};
use crate::store::StoreError;

/// The tables (created by `SCHEMA`'s companion and by the 7 → 8 migration).
pub(super) fn tables() -> String {
    format!(
        "
CREATE TABLE IF NOT EXISTS case_counts (
    period       TEXT NOT NULL,
    start        INTEGER NOT NULL,
    event        TEXT NOT NULL,
    leistung     TEXT NOT NULL,
    destination  TEXT NOT NULL,
    portal       TEXT NOT NULL,
    target       TEXT NOT NULL,
    n            INTEGER NOT NULL,
    PRIMARY KEY (period, start, event, leistung, destination, portal, target)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS case_latency (
    period       TEXT NOT NULL,
    start        INTEGER NOT NULL,
    leistung     TEXT NOT NULL,
    target       TEXT NOT NULL,
    {},
    PRIMARY KEY (period, start, leistung, target)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS case_zone (
    from_ms    INTEGER PRIMARY KEY,
    offset_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS case_buckets (
    upper_ms  INTEGER PRIMARY KEY
);
",
        histogram_columns("", " INTEGER NOT NULL DEFAULT 0")
    )
}

/// `FROM` the events of `source` (a SELECT of `at` (ms, UTC), `portal`,
/// `leistung`, `destination`, `target`, `k`: the histogram bucket of a
/// delivery, else NULL), each once per period, with its local time `lms`.
fn events_in_periods(source: &str) -> String {
    format!(
        "FROM (SELECT x.*, x.at + coalesce((SELECT offset_ms FROM case_zone WHERE from_ms <= x.at ORDER BY from_ms DESC LIMIT 1), 0) AS lms
          FROM ({source}) AS x) AS e,
         (SELECT 'hour' AS period UNION ALL SELECT 'day' UNION ALL SELECT 'week' UNION ALL SELECT 'month') AS p
    WHERE 1"
    )
}

/// The period's start of an event in `e`, and its Leistung (none per hour).
const START: &str = "CASE p.period WHEN 'hour' THEN e.lms / 3600000
                      WHEN 'day' THEN e.lms / 86400000
                      WHEN 'week' THEN e.lms / 86400000 - (e.lms / 86400000 + 3) % 7
                      ELSE CAST(julianday(date(e.lms / 1000, 'unixepoch', 'start of month')) - 2440587.5 AS INTEGER) END";
const LEISTUNG: &str = "CASE p.period WHEN 'hour' THEN '' ELSE e.leistung END";

/// The statement that counts events in their four periods (see
/// [`events_in_periods`] for `source`).
fn count(event: &str, source: &str) -> String {
    format!(
        "INSERT INTO case_counts (period, start, event, leistung, destination, portal, target, n)
    SELECT p.period, {START}, '{event}', {LEISTUNG},
        CASE p.period WHEN 'hour' THEN '' ELSE e.destination END,
        CASE WHEN p.period = 'hour' AND '{event}' NOT IN ('accepted', 'replied') THEN '' ELSE e.portal END,
        e.target,
        count(*)
    {from}
    GROUP BY 1, 2, 4, 5, 6, 7
    ON CONFLICT (period, start, event, leistung, destination, portal, target) DO UPDATE SET n = n + excluded.n;",
        from = events_in_periods(source),
    )
}

/// The statement that adds deliveries' times to the histograms of their
/// Leistung and target in their four periods.
fn latency(source: &str) -> String {
    let sums: Vec<String> = (0..HISTOGRAM).map(|i| format!("sum(e.k IS {i})")).collect();
    let adds = histogram_columns("", "")
        .split(", ")
        .map(|h| format!("{h} = {h} + excluded.{h}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO case_latency (period, start, leistung, target, {columns})
    SELECT p.period, {START}, {LEISTUNG}, e.target, {sums}
    {from}
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (period, start, leistung, target) DO UPDATE SET {adds};",
        columns = histogram_columns("", ""),
        sums = sums.join(", "),
        from = events_in_periods(source),
    )
}

/// A submission's events: `s` is the submissions row.
fn accepted(s: &str) -> String {
    format!(
        "SELECT CAST(strftime('%s', {s}.received_at) AS INTEGER) * 1000 AS at, {s}.portal AS portal,
                {s}.leistung AS leistung, {s}.destination AS destination, '' AS target, NULL AS k"
    )
}

/// A delivery's outcome: `d` is the deliveries row, its submission is joined as `s`.
fn outcome(event: &str, d: &str) -> String {
    let k = if event == "delivered" {
        format!("(SELECT count(*) FROM case_buckets WHERE upper_ms < {d}.updated_ms - {d}.created_at_ms)")
    } else {
        "NULL".to_owned()
    };
    format!(
        "SELECT CASE WHEN {d}.updated_ms > 0 THEN {d}.updated_ms ELSE CAST(strftime('%s', 'now') AS INTEGER) * 1000 END AS at,
                s.portal AS portal, s.leistung AS leistung, s.destination AS destination, {d}.target AS target,
                {k} AS k"
    )
}

/// The triggers (created after the migrations, so that a migration's
/// back-fill is not counted twice).
pub(super) fn triggers() -> String {
    let mut out = format!(
        "CREATE TRIGGER IF NOT EXISTS case_accepted AFTER INSERT ON submissions
    WHEN NEW.in_reply_to IS NULL BEGIN\n{}\nEND;
CREATE TRIGGER IF NOT EXISTS case_replied AFTER INSERT ON submissions
    WHEN NEW.in_reply_to IS NOT NULL BEGIN\n{}\nEND;\n",
        count("accepted", &accepted("NEW")),
        count("replied", &accepted("NEW"))
    );
    for event in ["delivered", "parked", "discarded"] {
        // A reply's delivery to its portal is no case outcome.
        let source = format!(
            "{} FROM submissions AS s WHERE s.id = NEW.submission_id AND s.in_reply_to IS NULL",
            outcome(event, "NEW")
        );
        let times = if event == "delivered" {
            latency(&source)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "CREATE TRIGGER IF NOT EXISTS case_{event} AFTER UPDATE OF state ON deliveries
    WHEN NEW.state = '{event}' AND OLD.state IS NOT '{event}' BEGIN\n{}\n{times}\nEND;\n",
            count(event, &source)
        ));
    }
    out
}

/// Fills the bucket table once, and the zone with the default if it has none.
pub(super) fn init(conn: &Connection) -> Result<(), StoreError> {
    let buckets: i64 = conn.query_row("SELECT count(*) FROM case_buckets", [], |r| r.get(0))?;
    if buckets == 0 {
        let mut insert = conn.prepare("INSERT INTO case_buckets (upper_ms) VALUES (?1)")?;
        for b in LATENCY_BOUNDS {
            insert.execute([b])?;
        }
    }
    let zone: i64 = conn.query_row("SELECT count(*) FROM case_zone", [], |r| r.get(0))?;
    if zone == 0 {
        set_zone(conn, StatsZone::default())?;
    }
    Ok(())
}

/// Sets the zone the counts of future events are kept in (counts already
/// made stay in the days they were counted in).
pub(super) fn set_zone(conn: &Connection, zone: StatsZone) -> Result<(), StoreError> {
    let transitions = zone.transitions();
    let current: Vec<(i64, i64)> = {
        let mut stmt = conn.prepare("SELECT from_ms, offset_ms FROM case_zone ORDER BY from_ms")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    if current == transitions {
        return Ok(());
    }
    conn.execute("DELETE FROM case_zone", [])?;
    let mut insert = conn.prepare("INSERT INTO case_zone (from_ms, offset_ms) VALUES (?1, ?2)")?;
    for (from, offset) in transitions {
        insert.execute(params![from, offset])?;
    }
    Ok(())
}

/// Counts what the store held before it kept case statistics (the migration
/// to schema version 8): submissions when they were received, and the
/// deliveries' present outcomes when they last changed.
pub(super) fn backfill(conn: &Connection) -> Result<(), StoreError> {
    init(conn)?;
    conn.execute_batch("DELETE FROM case_counts; DELETE FROM case_latency;")?;
    // In slices of rows: each statement groups a bounded number of events
    // (one statement over a year of history would hold all of it in memory).
    let slices = |table: &str, sql: &str| -> Result<(), StoreError> {
        let last: i64 = conn.query_row(
            &format!("SELECT coalesce(max(rowid), 0) FROM {table}"),
            [],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare(sql)?;
        let mut from = 0;
        while from < last {
            stmt.execute(params![from, from + BACKFILL_SLICE])?;
            from += BACKFILL_SLICE;
            if last > BACKFILL_SLICE {
                tracing::info!(
                    table,
                    done = from.min(last),
                    of = last,
                    "counting the history for case statistics"
                );
            }
        }
        Ok(())
    };
    let submissions = format!(
        "{} FROM submissions AS x0 WHERE x0.rowid > ?1 AND x0.rowid <= ?2",
        accepted("x0")
    );
    slices("submissions", &count("accepted", &submissions))?;
    for event in ["delivered", "parked", "discarded"] {
        let source = format!(
            "{} FROM deliveries AS d JOIN submissions AS s ON s.id = d.submission_id
             WHERE d.rowid > ?1 AND d.rowid <= ?2 AND d.state = '{event}'",
            outcome(event, "d")
        );
        slices("deliveries", &count(event, &source))?;
        if event == "delivered" {
            slices("deliveries", &latency(&source))?;
        }
    }
    Ok(())
}

/// Rows per statement of the back-fill.
const BACKFILL_SLICE: i64 = 100_000;

/// The counters `q` asks for, summed in the database, and the histograms
/// of times to delivery of the period's Leistungen and targets.
pub(super) fn counts(conn: &Connection, q: &CaseQuery) -> Result<CaseCounts, StoreError> {
    let (sql, portals, targets) = crate::store::cases::query_sql(q, "?");
    let mut stmt = conn.prepare_cached(&sql)?;
    let counts = stmt
        .query_map(
            params![
                q.period.as_str(),
                q.from,
                q.to,
                portals,
                targets,
                q.limit as i64
            ],
            |r| {
                Ok(CaseCount {
                    start: r.get(0)?,
                    event: r.get(1)?,
                    leistung: r.get(2)?,
                    destination: r.get(3)?,
                    portal: r.get(4)?,
                    target: r.get(5)?,
                    n: r.get::<_, i64>(6)?.max(0) as u64,
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare_cached(&crate::store::cases::latency_sql("?"))?;
    let latency = stmt
        .query_map(params![q.period.as_str(), q.from, q.to, targets], |r| {
            let mut histogram = [0u64; HISTOGRAM];
            for (i, h) in histogram.iter_mut().enumerate() {
                *h = r.get::<_, i64>(3 + i)?.max(0) as u64;
            }
            Ok(CaseLatency {
                start: r.get(0)?,
                leistung: r.get(1)?,
                target: r.get(2)?,
                histogram,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(CaseCounts { counts, latency })
}
