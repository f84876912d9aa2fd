//! Helpers of the cluster-mode tests (`tests/tests/cluster*.rs`): a scratch
//! database and broker prefix per test, removed afterwards (also when the
//! test fails midway), stopping and starting the machine's services, and a
//! portal load spread over several instances.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::receiver::Receiver;
use crate::{amqp_channel, free_port, portal_client, Options};
use ozg_gateway::tools::client::{self, SubmitRequest};

pub const ADMIN_DB: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

/// A database name and broker prefix of this test's own; dropped at the end.
pub struct Cluster {
    pub database: String,
    pub prefix: String,
    removed: bool,
}

impl Drop for Cluster {
    /// A test that failed midway leaves nothing behind either: its database
    /// and queues are removed with the services' own tools.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database);
        let _ = Command::new("psql")
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
            .arg(&drop)
            .status();
        if let Ok(out) = Command::new("rabbitmqctl")
            .args(["-q", "list_queues", "name"])
            .output()
        {
            for q in String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|q| q.starts_with(&format!("{}.", self.prefix)))
            {
                let _ = Command::new("rabbitmqctl")
                    .args(["-q", "delete_queue", q])
                    .output();
            }
        }
    }
}

impl Cluster {
    pub fn scratch() -> Cluster {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        Cluster {
            database: format!("ozg_cluster_{tag}"),
            prefix: format!("ozgtest-{tag}"),
            removed: false,
        }
    }

    pub fn options(&self, receiver: &Receiver) -> Options {
        Options {
            ingest_port: free_port(),
            admin_port: free_port(),
            receiver_url: receiver.url(),
            cluster: Some((self.database.clone(), self.prefix.clone())),
            ..Default::default()
        }
    }

    /// Drops the database and deletes the queues and exchanges.
    pub async fn remove(mut self, targets: &[&str]) {
        let (client, conn) = tokio_postgres::connect(ADMIN_DB, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            ))
            .await
            .unwrap();
        let ch = amqp_channel().await;
        let p = &self.prefix;
        let mut queues: Vec<String> = (0..18)
            .map(|k| format!("{p}.wait.{}ms", 1000u64 << k))
            .collect();
        for t in targets {
            queues.push(format!("{p}.deliver.{t}"));
            queues.push(format!("{p}.parked.{t}"));
        }
        for q in &queues {
            let _ = ch
                .queue_delete(q, lapin::options::QueueDeleteOptions::default())
                .await;
        }
        let mut exchanges: Vec<String> = (0..18)
            .map(|k| format!("{p}.wait.{}ms", 1000u64 << k))
            .collect();
        exchanges.push(format!("{p}.deliver"));
        exchanges.push(format!("{p}.parked"));
        for x in &exchanges {
            let _ = ch
                .exchange_delete(x, lapin::options::ExchangeDeleteOptions::default())
                .await;
        }
        self.removed = true;
    }
}

pub fn run(program: &str, args: &[&str]) {
    let ok = Command::new(program)
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{program} {args:?} failed (the test needs the local services)"
    );
}

/// Starts a stopped service again when dropped, also when the test fails.
pub struct StartAgain(&'static str, Vec<String>);

impl StartAgain {
    pub fn stop(program: &'static str, stop: &[&str], start: &[&str]) -> StartAgain {
        run(program, stop);
        StartAgain(program, start.iter().map(|s| s.to_string()).collect())
    }
}

impl Drop for StartAgain {
    fn drop(&mut self) {
        let args: Vec<&str> = self.1.iter().map(String::as_str).collect();
        let status = Command::new(self.0).args(&args).status();
        eprintln!("started again: {} {args:?}: {status:?}", self.0);
        if self.0 == "rabbitmqctl" {
            let _ = Command::new("rabbitmqctl").arg("await_startup").status();
        } else {
            for _ in 0..60 {
                let ok = Command::new("pg_isready")
                    .args(["-h", "127.0.0.1", "-p", "5432"])
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

pub fn postgres_cluster() -> String {
    std::fs::read_dir("/etc/postgresql")
        .expect("PostgreSQL from Debian's packages")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a PostgreSQL version under /etc/postgresql")
}

pub fn request(n: usize) -> SubmitRequest {
    SubmitRequest {
        leistung: "99115005001000".into(),
        destination: "05315000".into(),
        data: format!("<antrag><n>{n}</n></antrag>").into_bytes(),
        data_media_type: "application/xml".into(),
        ..Default::default()
    }
}

pub fn message_id(submission: &str, target: &str) -> String {
    ozg_gateway::model::submission::message_id(&uuid::Uuid::parse_str(submission).unwrap(), target)
}

/// Four portal workers submitting to `bases` in turn until stopped; a
/// refused submission is tried at the next base.
pub struct Load {
    accepted: Arc<Mutex<Vec<String>>>,
    refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(bases: &[String]) -> Load {
        let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
        let refused = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let counter = Arc::new(AtomicUsize::new(0));
        let workers = (0..4)
            .map(|w| {
                let (accepted, refused, stop, counter) = (
                    accepted.clone(),
                    refused.clone(),
                    stop.clone(),
                    counter.clone(),
                );
                let bases = bases.to_vec();
                tokio::spawn(async move {
                    let portal = portal_client("portal");
                    let mut at = w % bases.len();
                    while !stop.load(Ordering::Relaxed) {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        match client::submit(&portal, &bases[at], &request(n)).await {
                            Ok(r) if r.status == 202 => accepted
                                .lock()
                                .unwrap()
                                .push(r.body["submission_id"].as_str().unwrap().to_owned()),
                            _ => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                        at = (at + 1) % bases.len();
                    }
                })
            })
            .collect();
        Load {
            accepted,
            refused,
            stop,
            workers,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }

    /// Stops the workers; the ids of every accepted submission.
    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        let ids = self.accepted.lock().unwrap().clone();
        ids
    }
}

pub async fn ready(admin: u16) -> Option<bool> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let r = reqwest::get(format!("http://127.0.0.1:{admin}/readyz"))
        .await
        .ok()?;
    Some(r.status().is_success())
}

/// What reached the two targets of the cluster tests' route once every
/// accepted submission had arrived (see [`arrivals`]).
pub struct Arrivals {
    /// Accepted submissions missing at either target (0: `arrivals` waits for all).
    pub lost: usize,
    /// Distinct message ids at the http receiver.
    pub distinct: usize,
    /// Deliveries the http receiver got more than once (same `message_id`).
    pub duplicates: usize,
    /// Message ids at the http receiver of submissions that got no `202`.
    pub unexpected: usize,
    /// Files the filedrop target should hold (one per accepted submission).
    pub files: usize,
}

/// Waits up to `within` until every `accepted` submission reached the http
/// receiver (`fachverfahren-demo`) and left a file in one of `outboxes`
/// (`dms-demo`); fails the test naming what is missing otherwise.
pub async fn arrivals(
    receiver: &Receiver,
    accepted: &[String],
    outboxes: &[&std::path::Path],
    within: Duration,
) -> Arrivals {
    let expected: std::collections::HashSet<String> = accepted
        .iter()
        .map(|id| message_id(id, "fachverfahren-demo"))
        .collect();
    let files: Vec<String> = accepted
        .iter()
        .map(|id| message_id(id, "dms-demo"))
        .collect();
    let has_file = |m: &str| {
        outboxes
            .iter()
            .any(|d| d.join(format!("{m}.json")).exists())
    };
    let lost = crate::eventually(within, "every accepted submission arrives", || async {
        let got = receiver.accepted();
        let missing = expected.iter().filter(|m| !got.contains_key(*m)).count()
            + files.iter().filter(|m| !has_file(m)).count();
        (missing == 0).then_some(missing)
    })
    .await;
    let got = receiver.accepted();
    Arrivals {
        lost,
        distinct: got.len(),
        duplicates: got.values().map(|c| c - 1).sum(),
        unexpected: got.keys().filter(|m| !expected.contains(*m)).count(),
        files: files.len(),
    }
}
