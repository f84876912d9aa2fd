//! The crash oracle in cluster mode: two instances share one PostgreSQL and
//! one RabbitMQ under continuous portal load, and one or the other is killed
//! with SIGKILL at random moments and started again. Every submission that
//! got a `202` must reach its receivers (duplicates only with the same
//! `message_id`), every delivery must end recorded `delivered` with its
//! audit records, and `audit verify` must pass. Prints the counts and the seed.

use std::collections::HashMap;
use std::time::Duration;

use ozg_e2e::cluster::{arrivals, Cluster, Load};
use ozg_e2e::receiver::{Mode, Receiver};
use ozg_e2e::*;

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");
const KILLS: usize = 6;
const TARGETS: [&str; 2] = ["dms-demo", "fachverfahren-demo"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_killed_at_random_moments_lose_nothing() {
    let mut rng = Rng::from_clock();
    let receiver = Receiver::start(Mode::Accept).await;
    let cluster = Cluster::scratch();
    let opts = [cluster.options(&receiver), cluster.options(&receiver)];
    let configs = [test_config(&opts[0]), test_config(&opts[1])];
    let spawn = |i: usize| DaemonProcess::spawn(BIN, &configs[i].path, opts[i].ingest_port);
    let mut daemons = [Some(spawn(0)), Some(spawn(1))];
    let bases: Vec<String> = opts
        .iter()
        .map(|o| format!("https://localhost:{}", o.ingest_port))
        .collect();

    let load = Load::start(&bases);
    eventually(Duration::from_secs(60), "load runs", || async {
        (load.accepted() >= 50).then_some(())
    })
    .await;
    let mut killed = [0usize; 2];
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
        let i = rng.below(2) as usize;
        if let Some(d) = daemons[i].take() {
            d.kill_9();
        }
        killed[i] += 1;
        daemons[i] = Some(spawn(i));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = load.refused();
    let accepted = load.stop().await;
    assert!(
        accepted.len() >= 100,
        "too little load to mean anything: {}",
        accepted.len()
    );

    let outboxes: Vec<&std::path::Path> = configs.iter().map(|c| c.outbox.as_path()).collect();
    let arrived = arrivals(&receiver, &accepted, &outboxes, Duration::from_secs(120)).await;
    println!(
        "cluster crash oracle: 2 instances, {KILLS} x kill -9 (a {}, b {}); {} accepted (202), {refused} refused and tried at the other; http receiver: {} distinct message_ids, {} duplicates (same message_id), {} without a 202; filedrop: {} files; lost: {}",
        killed[0],
        killed[1],
        accepted.len(),
        arrived.distinct,
        arrived.duplicates,
        arrived.unexpected,
        arrived.files,
        arrived.lost,
    );
    assert_eq!(arrived.lost, 0);

    // Every delivery ends recorded as delivered (a receiver may hold an
    // envelope a moment before its outcome is committed, or the instance
    // that sent it died first and the other took the attempt over).
    let db = format!(
        "host=127.0.0.1 port=5432 user=postgres dbname={}",
        cluster.database
    );
    let (client, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    eventually(Duration::from_secs(60), "every delivery recorded", || async {
        let open: i64 = client
            .query_one(
                "SELECT count(*) FROM deliveries WHERE submission_id = ANY($1) AND state <> 'delivered'",
                &[&accepted],
            )
            .await
            .ok()?
            .get(0);
        (open == 0).then_some(())
    })
    .await;
    for d in &mut daemons {
        drop(d.take());
    }

    // The audit log: one chain, intact (verify also places records the
    // killed instances committed but had not chained yet), and every
    // accepted submission's records complete and in order.
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--config"])
        .arg(&configs[0].path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let pending: i64 = client
        .query_one("SELECT count(*) FROM audit_pending", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0, "every committed record is in the chain");
    let mut events: HashMap<String, Vec<String>> = HashMap::new();
    for row in client
        .query(
            "SELECT submission_id, record FROM audit WHERE submission_id = ANY($1) ORDER BY seq",
            &[&accepted],
        )
        .await
        .unwrap()
    {
        let record: serde_json::Value = serde_json::from_str(row.get(1)).unwrap();
        events
            .entry(row.get(0))
            .or_default()
            .push(record["event"].as_str().unwrap().to_owned());
    }
    for id in &accepted {
        let e = events.get(id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            e.get(..2),
            Some(&["received".to_owned(), "sealed".to_owned()][..]),
            "{id}: {e:?}"
        );
        assert!(
            e.iter().filter(|e| *e == "delivered").count() >= TARGETS.len(),
            "{id}: {e:?}"
        );
    }
    println!(
        "audit after the kills: {}",
        text.lines().next().unwrap_or_default()
    );
    drop(client);
    conn.abort();
    cluster.remove(&TARGETS).await;
}
