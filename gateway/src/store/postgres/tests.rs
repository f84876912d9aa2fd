//! Against the machine's PostgreSQL (127.0.0.1:5432, started by `.ci/run`):
//! a fresh database per test, dropped afterwards.

use super::audit::append;
use super::*;

const ADMIN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

/// A new, empty database; dropped by `drop_it`, or when the guard goes in a
/// test that failed midway.
struct Scratch {
    name: String,
    dropped: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.dropped {
            let _ = std::process::Command::new("psql")
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                ])
                .arg(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .status();
        }
    }
}

impl Scratch {
    async fn new() -> Scratch {
        let name = format!("ozg_test_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(ADMIN, NoTls)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        Scratch {
            name,
            dropped: false,
        }
    }

    fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port=5432 user=postgres dbname={}",
            self.name
        )
    }

    async fn drop_it(mut self, pool: Pool) {
        drop(pool);
        let (client, conn) = tokio_postgres::connect(ADMIN, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .unwrap();
        self.dropped = true;
    }
}

#[tokio::test]
async fn several_instances_migrating_at_once_apply_the_schema_once() {
    let db = Scratch::new().await;
    let pools: Vec<Pool> = (0..4).map(|_| pool(&db.url(), 2).unwrap()).collect();
    let runs = futures_util::future::join_all(pools.iter().map(migrate)).await;
    let befores: Vec<i32> = runs.into_iter().map(|r| r.unwrap()).collect();
    // Exactly one found the empty database; the others found it current.
    assert_eq!(
        befores.iter().filter(|b| **b == 0).count(),
        1,
        "{befores:?}"
    );
    assert!(befores.iter().all(|b| *b == 0 || *b == SCHEMA_VERSION));
    let conn = pools[0].get().await.unwrap();
    let tables: Vec<String> = conn
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in [
        "audit",
        "audit_checkpoints",
        "deliveries",
        "idempotency",
        "outbox",
        "ozg_schema",
        "submissions",
    ] {
        assert!(tables.iter().any(|x| x == t), "{t} missing: {tables:?}");
    }
    // Again: nothing to do.
    assert_eq!(migrate(&pools[1]).await.unwrap(), SCHEMA_VERSION);
    drop(conn);
    for p in pools.into_iter().skip(1) {
        drop(p);
    }
    let first = pool(&db.url(), 1).unwrap();
    db.drop_it(first).await;
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let db = Scratch::new().await;
    let p = pool(&db.url(), 1).unwrap();
    migrate(&p).await.unwrap();
    p.get()
        .await
        .unwrap()
        .execute("UPDATE ozg_schema SET version = 99", &[])
        .await
        .unwrap();
    let err = migrate(&p).await.unwrap_err().to_string();
    assert!(err.contains("newer than this gateway"), "{err}");
    db.drop_it(p).await;
}

#[tokio::test]
async fn instances_appending_and_chaining_at_once_write_one_chain_in_each_writers_order() {
    use super::audit::{chain_all_in, chain_round};
    use crate::model::audit::{record_hash, AuditEvent, AuditRecord, GENESIS};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let db = Scratch::new().await;
    let p = pool(&db.url(), 12).unwrap();
    migrate(&p).await.unwrap();
    // Three chainers (as three instances' would) place records while eight
    // writers append them, 25 each, one transaction per record.
    let writing = Arc::new(AtomicBool::new(true));
    let chainers: Vec<_> = (0..3)
        .map(|_| {
            let (p, writing) = (p.clone(), writing.clone());
            tokio::spawn(async move {
                let mut rounds = 0;
                while writing.load(Ordering::Relaxed) {
                    chain_round(&p).await.unwrap();
                    rounds += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                rounds
            })
        })
        .collect();
    let writers = (0..8).map(|w| {
        let p = p.clone();
        async move {
            for i in 0..25 {
                let mut conn = p.get().await.unwrap();
                let tx = conn.transaction().await.unwrap();
                let e = AuditEvent::started(&format!("w{w}-{i}"), "cfg", &[], None);
                append(&tx, "2026-12-01T00:00:00Z", e).await.unwrap();
                tx.commit().await.unwrap();
            }
        }
    });
    futures_util::future::join_all(writers).await;
    writing.store(false, Ordering::Relaxed);
    for c in chainers {
        assert!(c.await.unwrap() > 0);
    }
    chain_all_in(&p).await.unwrap();
    let conn = p.get().await.unwrap();
    let left: i64 = conn
        .query_one("SELECT count(*) FROM audit_pending", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "every record placed");
    let rows = conn
        .query("SELECT seq, record, hash FROM audit ORDER BY seq", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 200);
    let mut prev = GENESIS.to_owned();
    let mut next_of_writer = [0usize; 8];
    for (i, r) in rows.iter().enumerate() {
        let (seq, text, hash): (i64, String, String) = (r.get(0), r.get(1), r.get(2));
        assert_eq!(seq, i as i64 + 1, "no gaps, no duplicates");
        assert_eq!(record_hash(&text), hash);
        let record: AuditRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(record.prev, prev, "record {seq} follows the one before");
        // Each writer's records in the order it committed them.
        let version = record.detail["version"].as_str().unwrap().to_owned();
        let (w, i) = version[1..].split_once('-').unwrap();
        let (w, i): (usize, usize) = (w.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next_of_writer[w], "writer {w}'s records in order");
        next_of_writer[w] += 1;
        prev = hash;
    }
    let head: String = conn
        .query_one("SELECT hash FROM audit_head WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(head, prev, "the head is the last record");
    drop(conn);
    db.drop_it(p).await;
}

#[tokio::test]
async fn a_submission_is_stored_with_its_outbox_and_audit_records_and_keys_answer_again() {
    use crate::model::submission::{Accepted, IdempotencyKey};
    let db = Scratch::new().await;
    let p = pool(&db.url(), 4).unwrap();
    migrate(&p).await.unwrap();
    let key = |hash: &str| IdempotencyKey {
        key: "k1".into(),
        request_hash: hash.into(),
        legacy_request_hash: String::new(),
    };
    let mut s = crate::store::testing::submission("s1", "dms");
    s.idempotency = Some(key("h1"));
    assert_eq!(
        super::submissions::accept(&p, &s).await.unwrap(),
        Accepted::Stored
    );
    // The same key and content: the first answer; other content: a conflict.
    let mut again = crate::store::testing::submission("s2", "dms");
    again.idempotency = Some(key("h1"));
    assert_eq!(
        super::submissions::accept(&p, &again).await.unwrap(),
        Accepted::Replay {
            submission_id: "s1".into(),
            response: s.response.clone()
        }
    );
    again.idempotency = Some(key("h2"));
    assert_eq!(
        super::submissions::accept(&p, &again).await.unwrap(),
        Accepted::Conflict {
            submission_id: "s1".into()
        }
    );
    let conn = p.get().await.unwrap();
    let count = |sql: &'static str| {
        let conn = &conn;
        async move { conn.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        count("SELECT count(*) FROM submissions").await,
        1,
        "nothing of the replays stored"
    );
    assert_eq!(
        count("SELECT count(*) FROM deliveries WHERE state = 'pending'").await,
        1
    );
    assert_eq!(count("SELECT count(*) FROM outbox").await, 1);
    assert_eq!(
        count("SELECT count(*) FROM audit_pending").await,
        2,
        "received and sealed, committed with the submission"
    );
    assert_eq!(super::audit::chain_all_in(&p).await.unwrap(), 2);
    assert_eq!(
        count("SELECT count(*) FROM audit").await,
        2,
        "placed in the chain"
    );
    let env: Vec<u8> = conn
        .query_one(
            "SELECT envelope FROM deliveries WHERE message_id = 's1-dms'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(env, s.deliveries[0].envelope);
    // Envelopes that share a piece (format 2) are stored whole, each in its row.
    let shared = crate::store::testing::shared_submission("s3", &["dms", "fv"]);
    assert_eq!(
        super::submissions::accept(&p, &shared).await.unwrap(),
        Accepted::Stored
    );
    for t in ["dms", "fv"] {
        let (env, crc): (Vec<u8>, i64) = conn
            .query_one(
                "SELECT envelope, envelope_crc32 FROM deliveries WHERE message_id = $1",
                &[&format!("s3-{t}")],
            )
            .await
            .map(|r| (r.get(0), r.get(1)))
            .unwrap();
        assert_eq!(
            String::from_utf8(env.clone()).unwrap(),
            format!("{{\"for\":\"{t}\",\"c\":\"SHARED-CIPHERTEXT\"}}")
        );
        assert_eq!(
            crc,
            i64::from(crate::model::submission::envelope_checksum(&env))
        );
    }
    drop(conn);
    db.drop_it(p).await;
}

fn claimed(t: crate::store::Take) -> Option<crate::model::delivery::Claimed> {
    match t {
        crate::store::Take::Claimed(c) => Some(c),
        _ => None,
    }
}

#[tokio::test]
async fn a_delivery_is_taken_once_per_ticket_and_its_outcome_recorded_and_audited() {
    use super::deliveries::{envelope, record, take};
    use crate::model::delivery::Recorded;
    use crate::model::submission::Accepted;
    use crate::store::Take;
    let db = Scratch::new().await;
    let p = pool(&db.url(), 4).unwrap();
    migrate(&p).await.unwrap();
    let s = crate::store::testing::submission("s1", "dms");
    assert_eq!(
        super::submissions::accept(&p, &s).await.unwrap(),
        Accepted::Stored
    );
    let now = crate::model::time::now_ms();
    // Two copies of the same message (a relay republished it): one takes it.
    let (a, b) = tokio::join!(
        take(&p, "s1-dms", 0, false, now),
        take(&p, "s1-dms", 0, false, now)
    );
    let (a, b) = (claimed(a.unwrap()), claimed(b.unwrap()));
    assert_eq!(usize::from(a.is_some()) + usize::from(b.is_some()), 1);
    assert_eq!(a.or(b).unwrap().attempts, 1);
    // While it is attempted, a copy that is not a redelivery is stale ...
    assert!(matches!(
        take(&p, "s1-dms", 0, false, now).await.unwrap(),
        Take::Stale
    ));
    // ... and a redelivery (its consumer died mid-attempt) takes the attempt over.
    let over = claimed(take(&p, "s1-dms", 0, true, now).await.unwrap()).unwrap();
    assert_eq!(over.attempts, 1, "the same attempt, taken over");
    assert_eq!(
        envelope(&p, "s1-dms").await.unwrap().unwrap(),
        s.deliveries[0].envelope
    );
    let failure = ozg_adapter_sdk::Failure::new("http-503", "busy");
    let due = now + 60_000;
    record(
        &p,
        "s1-dms",
        &Recorded::RetryAt {
            at_ms: due,
            failure,
        },
        now,
    )
    .await
    .unwrap();
    // The retry wanted its message in the same transaction, at ticket 1.
    let conn = p.get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT ticket, due_ms FROM outbox WHERE message_id = 's1-dms'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i64>(1)), (1, due));
    // A message of the old ticket is stale; the new one early is not due yet.
    assert!(matches!(
        take(&p, "s1-dms", 0, true, now).await.unwrap(),
        Take::Stale
    ));
    assert!(matches!(
        take(&p, "s1-dms", 1, false, now).await.unwrap(),
        Take::NotDue { at_ms } if at_ms == due
    ));
    let again = claimed(take(&p, "s1-dms", 1, false, due).await.unwrap()).unwrap();
    assert_eq!(again.attempts, 2);
    record(
        &p,
        "s1-dms",
        &Recorded::Delivered {
            receipt: Some("r".into()),
        },
        due + 1,
    )
    .await
    .unwrap();
    // A redelivered message for a delivered delivery is not taken again, and
    // an outcome recorded by a second taker is refused as superseded.
    for ticket in [0, 1, 2] {
        assert!(matches!(
            take(&p, "s1-dms", ticket, true, due + 2).await.unwrap(),
            Take::Stale
        ));
    }
    assert!(matches!(
        record(
            &p,
            "s1-dms",
            &Recorded::Delivered { receipt: None },
            due + 3
        )
        .await,
        Err(crate::store::StoreError::Superseded(_))
    ));
    super::audit::chain_all_in(&p).await.unwrap();
    let records: Vec<serde_json::Value> = conn
        .query("SELECT record FROM audit ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.get::<_, String>(0)).unwrap())
        .collect();
    let events: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["received", "sealed", "attempt_failed", "delivered"]
    );
    // Each outcome's record names its delivery and the attempt it records.
    for (r, attempt) in records[2..].iter().zip([1, 2]) {
        assert_eq!(r["message_id"], "s1-dms");
        assert_eq!(r["target"], "dms");
        assert_eq!(r["submission_id"], "s1");
        assert_eq!(r["detail"]["attempt"], attempt, "{r}");
    }
    assert_eq!(records[2]["detail"]["class"], "http-503");
    drop(conn);
    db.drop_it(p).await;
}

#[tokio::test]
async fn the_outbox_holds_each_message_until_the_broker_confirmed_it_and_leases_expire() {
    use super::outbox::{lease, published};
    let db = Scratch::new().await;
    let p = pool(&db.url(), 2).unwrap();
    migrate(&p).await.unwrap();
    for id in ["s1", "s2", "s3"] {
        super::submissions::accept(&p, &crate::store::testing::submission(id, "dms"))
            .await
            .unwrap();
    }
    let first = lease(&p, 2, 60_000).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(
        (
            first[0].message_id.as_str(),
            first[0].target.as_str(),
            first[0].ticket
        ),
        ("s1-dms", "dms", 0)
    );
    // A second relay does not get leased rows.
    let second = lease(&p, 10, 60_000).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].message_id, "s3-dms");
    // Confirmed ones go; an unconfirmed one stays, and is leased again once
    // its lease ran out (its relay died).
    assert_eq!(published(&p, &first[..1]).await.unwrap(), 1);
    assert!(lease(&p, 10, 60_000).await.unwrap().is_empty());
    p.get()
        .await
        .unwrap()
        .execute(
            "UPDATE outbox SET lease_ms = 0 WHERE message_id = 's2-dms'",
            &[],
        )
        .await
        .unwrap();
    let again = lease(&p, 10, 60_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, "s2-dms");
    // A row wanted again meanwhile (another ticket) survives the old confirm.
    let conn = p.get().await.unwrap();
    conn.execute(
        "UPDATE outbox SET ticket = 5 WHERE message_id = 's3-dms'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(published(&p, &second).await.unwrap(), 0);
    drop(conn);
    db.drop_it(p).await;
}

#[tokio::test]
async fn case_counts_are_folded_into_the_periods_of_the_zone() {
    use super::deliveries::{record, take};
    use crate::model::cases::{parse_date, Period, StatsZone};
    use crate::model::delivery::Recorded;
    let db = Scratch::new().await;
    let p = pool(&db.url(), 4).unwrap();
    migrate(&p).await.unwrap();
    super::cases::set_zone(&p, StatsZone::EuropeBerlin)
        .await
        .unwrap();
    // 22:30 UTC on 30 June is 00:30 on 1 July in Berlin: July's first day,
    // in the week that began on Monday 29 June.
    for (i, leistung) in ["a", "a", "b"].iter().enumerate() {
        let mut s = crate::store::testing::submission(&format!("s{i}"), "dms");
        s.leistung = (*leistung).into();
        s.received_at = "2026-06-30T22:30:00.123456789Z".into();
        super::submissions::accept(&p, &s).await.unwrap();
    }
    let now = crate::model::time::now_ms();
    for (id, outcome) in [
        ("s0-dms", Recorded::Delivered { receipt: None }),
        (
            "s1-dms",
            Recorded::Parked {
                failure: ozg_adapter_sdk::Failure::new("http-400", "refused"),
                gave_up_after: None,
            },
        ),
    ] {
        take(&p, id, 0, false, now).await.unwrap();
        record(&p, id, &outcome, now).await.unwrap();
    }
    let july = parse_date("2026-07-01").unwrap();
    let rows = super::cases::counts(
        &p,
        &crate::model::cases::CaseQuery::all(Period::Day, july, july + 1),
    )
    .await
    .unwrap()
    .counts;
    let accepted: Vec<(String, u64)> = rows
        .iter()
        .filter(|r| r.event == "accepted")
        .map(|r| (r.leistung.clone(), r.n))
        .collect();
    assert_eq!(accepted, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
    let week = super::cases::counts(
        &p,
        &crate::model::cases::CaseQuery::all(Period::Week, july - 2, july - 1),
    )
    .await
    .unwrap()
    .counts;
    assert_eq!(
        week.iter()
            .filter(|r| r.event == "accepted")
            .map(|r| r.n)
            .sum::<u64>(),
        3
    );
    let month = super::cases::counts(
        &p,
        &crate::model::cases::CaseQuery::all(Period::Month, july, july + 1),
    )
    .await
    .unwrap()
    .counts;
    assert_eq!(
        month
            .iter()
            .filter(|r| r.event == "accepted")
            .map(|r| r.n)
            .sum::<u64>(),
        3
    );
    let hour = super::cases::counts(
        &p,
        &crate::model::cases::CaseQuery::all(Period::Hour, july * 24, july * 24 + 1),
    )
    .await
    .unwrap()
    .counts;
    assert_eq!(
        hour.iter()
            .filter(|r| r.event == "accepted")
            .map(|r| r.n)
            .sum::<u64>(),
        3
    );
    // The outcomes happened today; the delivered one carries its time's bucket.
    let today = StatsZone::EuropeBerlin.day_of(now);
    let answer = super::cases::counts(
        &p,
        &crate::model::cases::CaseQuery::all(Period::Day, today, today + 1),
    )
    .await
    .unwrap();
    let rows = &answer.counts;
    let of = |e: &str| {
        rows.iter()
            .filter(|r| r.event == e)
            .map(|r| r.n)
            .sum::<u64>()
    };
    assert_eq!((of("delivered"), of("parked")), (1, 1));
    assert!(answer
        .latency
        .iter()
        .any(|l| l.target == "dms" && l.leistung == "a" && l.histogram.iter().sum::<u64>() == 1));
    // Nothing is left to fold, and folding again changes nothing.
    assert_eq!(super::cases::fold(&p, false).await.unwrap(), 0);
    db.drop_it(p).await;
}

#[tokio::test]
async fn a_reply_is_stored_with_what_it_answers_audited_there_and_counted_as_replied() {
    use crate::model::cases::{CaseQuery, Period};
    use crate::model::submission::ReplyOf;
    let db = Scratch::new().await;
    let p = pool(&db.url(), 4).unwrap();
    migrate(&p).await.unwrap();
    let s = crate::store::testing::submission("s1", "dms");
    super::submissions::accept(&p, &s).await.unwrap();
    let mut r = crate::store::testing::submission("r1", "portal.replies");
    r.reply = Some(ReplyOf {
        submission_id: "s1".into(),
        by: "dms".into(),
        reply_type: "bescheid".into(),
    });
    super::submissions::accept(&p, &r).await.unwrap();
    assert_eq!(super::audit::chain_all_in(&p).await.unwrap(), 5);
    let stored = super::reads::submission(&p, "r1").await.unwrap().unwrap();
    assert_eq!(stored.in_reply_to.as_deref(), Some("s1"));
    assert_eq!(stored.portal, "portal");
    let original = super::reads::submission(&p, "s1").await.unwrap().unwrap();
    assert_eq!(original.in_reply_to, None);
    let replies = super::reads::replies_to(&p, "s1").await.unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(
        (
            replies[0].reply_id.as_str(),
            replies[0].by.as_str(),
            replies[0].reply_type.as_str()
        ),
        ("r1", "dms", "bescheid")
    );
    let trace = super::reads::trace(&p, "s1").await.unwrap();
    let events: Vec<&str> = trace.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["received", "sealed", "replied"]);
    assert_eq!(trace[2].detail["reply_id"], "r1");
    assert_eq!(trace[2].detail["by"], "dms");
    let received = &super::reads::trace(&p, "r1").await.unwrap()[0];
    assert_eq!(received.detail["sender"], "dms");
    assert_eq!(received.detail["in_reply_to"], "s1");
    let day = crate::model::cases::parse_date("2026-11-24").unwrap();
    let counts = super::cases::counts(&p, &CaseQuery::all(Period::Day, day, day + 1))
        .await
        .unwrap()
        .counts;
    let of = |e: &str| {
        counts
            .iter()
            .filter(|c| c.event == e)
            .map(|c| (c.portal.as_str(), c.n))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of("accepted"),
        [("portal", 1)],
        "the reply is no submission"
    );
    assert_eq!(of("replied"), [("portal", 1)]);
    db.drop_it(p).await;
}

#[tokio::test]
async fn unstamped_checkpoints_are_listed_oldest_first_above_the_mark() {
    let db = Scratch::new().await;
    let p = pool(&db.url(), 1).unwrap();
    migrate(&p).await.unwrap();
    let conn = p.get().await.unwrap();
    for seq in [2i64, 4, 6] {
        conn.execute(
            "INSERT INTO audit_checkpoints (seq, head, ts, jws, first_seq, root) VALUES ($1, 'h', 't', 'j', NULL, NULL)",
            &[&seq],
        )
        .await
        .unwrap();
    }
    conn.execute(
        "INSERT INTO audit_stamps (seq, token, stamped_at) VALUES (2, '\\x00', 0)",
        &[],
    )
    .await
    .unwrap();
    let seqs =
        |list: &[crate::model::audit::Checkpoint]| list.iter().map(|c| c.seq).collect::<Vec<_>>();
    let (left, total) = reads::unstamped(&conn, 0, 1).await.unwrap();
    assert_eq!((seqs(&left), total), (vec![4], 2));
    // Above a mark, only what follows it is looked at and counted.
    let (left, total) = reads::unstamped(&conn, 4, 32).await.unwrap();
    assert_eq!((seqs(&left), total), (vec![6], 1));
    drop(conn);
    db.drop_it(p).await;
}
