//! The raw limits of the engines under cluster mode, measured beside it by
//! `bench/cluster.sh` in the same run (issue 14's benchmark):
//!
//! - [`amqp`]: plain `lapin` publishing with confirms and `mandatory` into one
//!   quorum queue, messages of the size the gateway's relay publishes, in
//!   batches whose confirms are awaited together (as the relay does).
//! - [`postgres`]: plain inserts and commits of the rows one accepted
//!   submission writes (submission, deliveries with their sealed envelopes,
//!   outbox rows, two audit records), with real sealed envelopes of the
//!   profile, on as many connections as an instance's pool — without the
//!   gateway's idempotency claim and without the audit chain's head lock.
//!
//! Both write into scratch names (a queue `<prefix>.bench-raw`, a database
//! `<name>_raw`) that are removed afterwards.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde::Serialize;

use crate::model::submission::NewSubmission;

/// What one raw limit reached.
#[derive(Debug, Clone, Serialize)]
pub struct RawReport {
    pub engine: String,
    /// What one unit is ("messages", "submissions").
    pub unit: String,
    pub workers: usize,
    pub seconds: f64,
    pub units: u64,
    pub per_second: f64,
}

/// Publishes `size`-byte persistent messages with confirms into a fresh
/// quorum queue on `channels` channels, `batch` at a time per channel, for
/// `seconds`; deletes the queue afterwards.
pub async fn amqp(
    url: &str,
    prefix: &str,
    size: usize,
    channels: usize,
    batch: usize,
    seconds: f64,
) -> Result<RawReport, String> {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current())
        .with_connection_name("ozg-gateway bench".into());
    let conn = Connection::connect(url, props).await.map_err(|e| {
        format!(
            "connecting to the broker: {}",
            ozg_adapter_amqp::error_class(&e)
        )
    })?;
    let queue = format!("{prefix}.bench-raw");
    let setup = conn.create_channel().await.map_err(|e| e.to_string())?;
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    setup
        .queue_declare(
            &queue,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .map_err(|e| format!("declaring {queue}: {e}"))?;
    let body = vec![b'x'; size.max(1)];
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..channels.max(1) {
        let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let (queue, body, stop, done) = (queue.clone(), body.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut confirms = Vec::with_capacity(batch);
                for _ in 0..batch.max(1) {
                    let props = BasicProperties::default().with_delivery_mode(2);
                    let options = BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    };
                    confirms.push(ch.basic_publish("", &queue, options, &body, props).await?);
                }
                for c in futures_util::future::join_all(confirms).await {
                    if matches!(c?, Confirmation::Ack(None)) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok::<(), lapin::Error>(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failed = None;
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            failed = Some(e.to_string());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = setup
        .queue_delete(&queue, QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "bench done").await;
    if let Some(e) = failed {
        return Err(format!("publishing: {e}"));
    }
    let n = done.load(Ordering::Relaxed);
    Ok(RawReport {
        engine: "rabbitmq".into(),
        unit: "messages".into(),
        workers: channels,
        seconds: elapsed,
        units: n,
        per_second: n as f64 / elapsed,
    })
}

/// Inserts and commits the rows of `samples` (cycled, with fresh ids) on
/// `connections` connections for `seconds`, into a scratch database
/// `<dbname>_raw` created with the cluster schema and dropped afterwards.
pub async fn postgres(
    database: &str,
    samples: Vec<NewSubmission>,
    connections: usize,
    seconds: f64,
) -> Result<RawReport, String> {
    if samples.is_empty() {
        return Err("no sample submissions".into());
    }
    let mut config: tokio_postgres::Config = database.parse().map_err(|e| format!("{e}"))?;
    let base = config.get_dbname().unwrap_or("ozg_gateway").to_owned();
    let scratch = format!("{base}_raw");
    let admin = {
        let mut c = config.clone();
        c.dbname("postgres");
        c
    };
    let (client, task) = admin
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connecting to PostgreSQL: {e}"))?;
    tokio::spawn(task);
    let drop_scratch = format!("DROP DATABASE IF EXISTS \"{scratch}\" WITH (FORCE)");
    client
        .batch_execute(&drop_scratch)
        .await
        .map_err(|e| e.to_string())?;
    client
        .batch_execute(&format!("CREATE DATABASE \"{scratch}\""))
        .await
        .map_err(|e| e.to_string())?;
    config.dbname(&scratch);
    let pool = crate::store::postgres::pool_of(config, connections).map_err(|e| e.to_string())?;
    crate::store::postgres::migrate(&pool)
        .await
        .map_err(|e| e.to_string())?;
    let samples = Arc::new(samples);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicI64::new(1));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let (pool, samples, stop, done, seq, next) = (
            pool.clone(),
            samples.clone(),
            stop.clone(),
            done.clone(),
            seq.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let s = &samples[n as usize % samples.len()];
                insert_rows(&mut conn, s, n, &seq).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failed = None;
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            failed = Some(e);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop_pool(pool).await;
    let _ = client.batch_execute(&drop_scratch).await;
    if let Some(e) = failed {
        return Err(format!("inserting: {e}"));
    }
    let n = done.load(Ordering::Relaxed);
    Ok(RawReport {
        engine: "postgresql".into(),
        unit: "submissions".into(),
        workers: connections,
        seconds: elapsed,
        units: n,
        per_second: n as f64 / elapsed,
    })
}

async fn drop_pool(pool: deadpool_postgres::Pool) {
    pool.close();
    // Connections close in the background; give them a moment before DROP DATABASE.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// One transaction with the rows of `s` under fresh ids (`n` makes them unique).
async fn insert_rows(
    conn: &mut deadpool_postgres::Object,
    s: &NewSubmission,
    n: u64,
    seq: &AtomicI64,
) -> Result<(), String> {
    let e = |e: tokio_postgres::Error| e.to_string();
    let tx = conn.transaction().await.map_err(e)?;
    let id = format!("{}-{n}", s.id);
    tx.execute(
        "INSERT INTO submissions (id, portal, leistung, destination, received_at, response) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&id, &s.portal, &s.leistung, &s.destination, &s.received_at, &s.response],
    )
    .await.map_err(e)?;
    let now = crate::model::time::now_ms();
    for d in &s.deliveries {
        let message_id = format!("{}-{n}", d.message_id);
        let (envelope, crc) = d.assembled(&s.shared);
        tx.execute(
            "INSERT INTO deliveries (message_id, submission_id, target, state, attempts, next_attempt_at, created_at_ms,
                                     updated_at, updated_ms, envelope, envelope_crc32)
             VALUES ($1, $2, $3, 'pending', 0, $4, $4, $5, $4, $6, $7)",
            &[&message_id, &id, &d.target, &now, &s.received_at, &envelope.as_ref(), &i64::from(crc)],
        )
        .await.map_err(e)?;
        tx.execute(
            "INSERT INTO outbox (message_id, target, ticket, due_ms, created_ms) VALUES ($1, $2, 0, $3, $3)",
            &[&message_id, &d.target, &now],
        )
        .await.map_err(e)?;
    }
    // Two audit records as the gateway writes them (record and hash computed
    // alike), but each on its own head: no chain, so no lock between writers.
    for event in [
        crate::model::audit::AuditEvent::received(s),
        crate::model::audit::AuditEvent::sealed(s),
    ] {
        let n = seq.fetch_add(1, Ordering::Relaxed);
        let head = crate::model::audit::Head {
            seq: (n - 1) as u64,
            hash: "0".repeat(64),
        };
        let ts = crate::model::time::rfc3339_ms(now);
        let (record, text, hash) =
            crate::model::audit::chained(&head, &ts, event).map_err(|e| e.to_string())?;
        tx.execute(
            "INSERT INTO audit (seq, submission_id, record, hash) VALUES ($1, $2, $3, $4)",
            &[&n, &record.submission_id, &text, &hash],
        )
        .await
        .map_err(e)?;
    }
    tx.commit().await.map_err(e)
}
