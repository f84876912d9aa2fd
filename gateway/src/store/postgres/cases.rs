//! Case statistics in the cluster store (see `schema_v4.sql`): triggers
//! append events; [`fold`] adds them into the counters of their hour, day,
//! week and month in the zone's local time, as the embedded store's triggers
//! do at once. A query folds first, so it always sees every committed event.

use deadpool_postgres::Pool;

use super::backend;
use crate::model::cases::{
    histogram_columns, CaseCount, CaseCounts, CaseLatency, CaseQuery, StatsZone, HISTOGRAM,
    LATENCY_BOUNDS,
};
use crate::store::StoreError;

/// The advisory lock the fold holds ("ozg-case" as a number).
const FOLD_LOCK: i64 = 0x6f7a_672d_6361_7365;
/// Events folded per statement (keeps one transaction short).
const FOLD_BATCH: i64 = 50_000;

/// Moves up to `$1` events into their counters (see `schema_v4.sql`).
fn fold_sql() -> String {
    let sums: Vec<String> = (0..HISTOGRAM)
        .map(|i| format!("count(*) FILTER (WHERE k = {i})"))
        .collect();
    let adds = histogram_columns("", "")
        .split(", ")
        .map(|h| format!("{h} = case_latency.{h} + excluded.{h}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "
WITH moved AS (
    DELETE FROM case_events WHERE id IN (SELECT id FROM case_events ORDER BY id LIMIT $1)
    RETURNING at_ms, event, portal, leistung, destination, target, latency_ms
), e AS (
    SELECT m.*,
           m.at_ms + coalesce((SELECT offset_ms FROM case_zone z WHERE z.from_ms <= m.at_ms
                               ORDER BY z.from_ms DESC LIMIT 1), 0) AS lms,
           CASE WHEN m.latency_ms IS NULL THEN NULL
                ELSE (SELECT count(*) FROM case_buckets WHERE upper_ms < m.latency_ms) END AS k
    FROM moved m
), rows AS (
    SELECT 'hour' AS period, lms / 3600000 AS start, event, '' AS leistung, '' AS destination,
           CASE WHEN event IN ('accepted', 'replied') THEN portal ELSE '' END AS portal, target, k FROM e
    UNION ALL
    SELECT 'day', lms / 86400000, event, leistung, destination, portal, target, k FROM e
    UNION ALL
    SELECT 'week', lms / 86400000 - (lms / 86400000 + 3) % 7, event, leistung, destination, portal, target, k FROM e
    UNION ALL
    SELECT 'month', (date_trunc('month', date '1970-01-01' + (lms / 86400000)::int)::date - date '1970-01-01')::bigint,
           event, leistung, destination, portal, target, k FROM e
), counted AS (
    INSERT INTO case_counts (period, start, event, leistung, destination, portal, target, n)
    SELECT period, start, event, leistung, destination, portal, target, count(*) FROM rows
    GROUP BY 1, 2, 3, 4, 5, 6, 7
    ORDER BY 1, 2, 3, 4, 5, 6, 7
    ON CONFLICT (period, start, event, leistung, destination, portal, target)
        DO UPDATE SET n = case_counts.n + excluded.n
    RETURNING 1
)
INSERT INTO case_latency (period, start, leistung, target, {columns})
SELECT period, start, leistung, target, {sums} FROM rows WHERE k IS NOT NULL
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4
ON CONFLICT (period, start, leistung, target) DO UPDATE SET {adds}",
        columns = histogram_columns("", ""),
        sums = sums.join(", "),
    )
}

/// Adds waiting events into the counters; returns how many histogram rows
/// it wrote (0: nothing waited, or no delivery among it). `wait`: wait for
/// an instance folding right now (a query must see every event); else leave
/// it to that one.
pub async fn fold(pool: &Pool, wait: bool) -> Result<u64, StoreError> {
    let mut conn = pool.get().await.map_err(backend)?;
    let mut total = 0u64;
    loop {
        let tx = conn.transaction().await.map_err(backend)?;
        if wait {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FOLD_LOCK])
                .await
                .map_err(backend)?;
        } else {
            let got: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&FOLD_LOCK])
                .await
                .map_err(backend)?
                .get(0);
            if !got {
                return Ok(total);
            }
        }
        let rows = tx
            .execute(&fold_sql(), &[&FOLD_BATCH])
            .await
            .map_err(backend)?;
        // `rows` counts counter rows written; the events moved are what is left to ask.
        let left: i64 = tx
            .query_one(
                "SELECT count(*) FROM (SELECT 1 FROM case_events LIMIT 1) x",
                &[],
            )
            .await
            .map_err(backend)?
            .get(0);
        tx.commit().await.map_err(backend)?;
        total += rows;
        if left == 0 {
            return Ok(total);
        }
    }
}

/// Sets the zone future events are counted in, and fills the histogram's
/// buckets once.
pub async fn set_zone(pool: &Pool, zone: StatsZone) -> Result<(), StoreError> {
    let mut conn = pool.get().await.map_err(backend)?;
    let tx = conn.transaction().await.map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FOLD_LOCK])
        .await
        .map_err(backend)?;
    let buckets: i64 = tx
        .query_one("SELECT count(*) FROM case_buckets", &[])
        .await
        .map_err(backend)?
        .get(0);
    if buckets == 0 {
        for b in LATENCY_BOUNDS {
            tx.execute("INSERT INTO case_buckets (upper_ms) VALUES ($1)", &[&b])
                .await
                .map_err(backend)?;
        }
    }
    let current: Vec<(i64, i64)> = tx
        .query(
            "SELECT from_ms, offset_ms FROM case_zone ORDER BY from_ms",
            &[],
        )
        .await
        .map_err(backend)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let transitions = zone.transitions();
    if current != transitions {
        // Events not yet folded are counted in the zone they happened under.
        tx.execute(&fold_sql(), &[&i64::MAX])
            .await
            .map_err(backend)?;
        tx.execute("DELETE FROM case_zone", &[])
            .await
            .map_err(backend)?;
        let (from, offset): (Vec<i64>, Vec<i64>) = transitions.into_iter().unzip();
        tx.execute(
            "INSERT INTO case_zone (from_ms, offset_ms) SELECT * FROM unnest($1::bigint[], $2::bigint[])",
            &[&from, &offset],
        )
        .await
        .map_err(backend)?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(())
}

/// The counters `q` asks for and the period range's histograms, every event
/// committed before the call included.
pub async fn counts(pool: &Pool, q: &CaseQuery) -> Result<CaseCounts, StoreError> {
    fold(pool, true).await?;
    let (sql, portals, targets) = crate::store::cases::query_sql(q, "$");
    let conn = pool.get().await.map_err(backend)?;
    let period = q.period.as_str();
    let rows = conn
        .query(
            &sql,
            &[
                &period,
                &q.from,
                &q.to,
                &portals,
                &targets,
                &(q.limit as i64),
            ],
        )
        .await
        .map_err(backend)?;
    let counts = rows
        .iter()
        .map(|r| CaseCount {
            start: r.get(0),
            event: r.get(1),
            leistung: r.get(2),
            destination: r.get(3),
            portal: r.get(4),
            target: r.get(5),
            n: r.get::<_, i64>(6).max(0) as u64,
        })
        .collect();
    let rows = conn
        .query(
            &crate::store::cases::latency_sql("$"),
            &[&period, &q.from, &q.to, &targets],
        )
        .await
        .map_err(backend)?;
    let latency = rows
        .iter()
        .map(|r| {
            let mut histogram = [0u64; HISTOGRAM];
            for (i, h) in histogram.iter_mut().enumerate() {
                *h = r.get::<_, i64>(3 + i).max(0) as u64;
            }
            CaseLatency {
                start: r.get(0),
                leistung: r.get(1),
                target: r.get(2),
                histogram,
            }
        })
        .collect();
    Ok(CaseCounts { counts, latency })
}
