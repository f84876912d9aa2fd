//! The cluster store's PostgreSQL side (issue 14, first part): a pooled
//! connection ([`deadpool_postgres`] over [`tokio_postgres`]) and the schema,
//! created and migrated at start by whichever instance comes first.
//!
//! Migrations run under a PostgreSQL advisory lock held for the whole
//! migration, each in one transaction, so several instances may start at
//! once: the first applies, the others wait and find the schema current.
//! The schema (`schema_v1.sql`) mirrors the embedded store's tables, with the
//! sealed envelopes as `BYTEA` in the deliveries (PostgreSQL keeps them
//! durable and replicated with everything else; no second system to back up)
//! and an outbox table for the broker relay.
//!
//! [`PostgresStore`] is the `Store` trait on top of it (`[store] type =
//! "cluster"`); the broker side is `crate::store::rabbitmq` behind `crate::store::queue`.

pub mod audit;
mod cases;
pub mod deliveries;
mod ops;
pub mod outbox;
pub mod reads;
mod store;
pub mod submissions;

pub use store::PostgresStore;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::store::StoreError;

/// The schema version this gateway writes.
pub const SCHEMA_VERSION: i32 = 6;

/// The migrations, in order: (version it brings the schema to, SQL).
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("schema_v1.sql")),
    (2, include_str!("schema_v2.sql")),
    (3, include_str!("schema_v3.sql")),
    (4, include_str!("schema_v4.sql")),
    (5, include_str!("schema_v5.sql")),
    (6, include_str!("schema_v6.sql")),
];

/// The advisory lock key migrations hold ("ozg-gw-m" as a number).
const MIGRATION_LOCK: i64 = 0x6f7a_672d_6777_2d6d;

/// A database error as a [`StoreError`]: one that means the database cannot
/// be reached right now (connection refused or lost, the server shutting down
/// or starting, the pool waiting in vain) is `Unavailable` — the caller waits
/// and tries again; anything else is `Backend`.
pub(super) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    let e: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
    let pg = e.downcast_ref::<tokio_postgres::Error>().or_else(|| match e
        .downcast_ref::<deadpool_postgres::PoolError>(
    ) {
        Some(deadpool_postgres::PoolError::Backend(pg)) => Some(pg),
        _ => None,
    });
    let unreachable = match pg {
        Some(pg) => match pg.as_db_error() {
            // Class 08 (connection exception), 57P01..57P03 (shutting down, starting).
            Some(db) => {
                let code = db.code().code();
                code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
            }
            // Lost or refused connections; not conversion errors (our bug).
            None => {
                pg.is_closed()
                    || std::error::Error::source(pg).is_some_and(|s| s.is::<std::io::Error>())
                    || pg.to_string().starts_with("error connecting")
            }
        },
        None => e.downcast_ref::<deadpool_postgres::PoolError>().is_some(),
    };
    if unreachable {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e)
    }
}

/// A connection pool to `url` (a libpq URL or key=value string).
pub fn pool(url: &str, size: usize) -> Result<Pool, StoreError> {
    pool_of(url.parse().map_err(backend)?, size)
}

/// A connection pool of `size` connections to the database `config` names.
pub fn pool_of(config: tokio_postgres::Config, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .build()
        .map_err(backend)
}

/// Brings the schema to [`SCHEMA_VERSION`]; returns the version found before.
/// Safe to run from several instances at once. A database of a newer schema
/// is refused.
pub async fn migrate(pool: &Pool) -> Result<i32, StoreError> {
    let mut conn = pool.get().await.map_err(backend)?;
    conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(backend)?;
    let result = migrate_locked(&mut conn).await;
    let unlocked = conn
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let before = result?;
    unlocked.map_err(backend)?;
    Ok(before)
}

async fn migrate_locked(conn: &mut deadpool_postgres::Object) -> Result<i32, StoreError> {
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS ozg_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
         INSERT INTO ozg_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
    )
    .await
    .map_err(backend)?;
    let before: i32 = conn
        .query_one("SELECT version FROM ozg_schema WHERE id = 1", &[])
        .await
        .map_err(backend)?
        .get(0);
    if before > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {before}, newer than this gateway ({SCHEMA_VERSION}): run the newer version"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > before) {
        let tx = conn.transaction().await.map_err(backend)?;
        tx.batch_execute(sql).await.map_err(backend)?;
        tx.execute(
            "UPDATE ozg_schema SET version = $1 WHERE id = 1",
            &[version],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        tracing::info!(version, "PostgreSQL store migrated");
    }
    Ok(before)
}

#[cfg(test)]
mod tests;
