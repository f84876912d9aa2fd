//! Data built to make validation expensive, against the real daemon: one element
//! with 150,000 attributes, sent by two portals' worth of connections at once for
//! the Leistung with an XML Schema. The attackers get a 4xx or `408` quickly, the
//! admin listener answers `/healthz` within a second throughout, and a legitimate
//! submission sent meanwhile is accepted.
//!
//! The daemon runs in-process on a runtime of its own with two workers (what it
//! gets on a two-core machine), apart from the test's clients: a daemon whose
//! workers are stuck cannot stall the test's clocks and timeouts with them, so
//! the test fails on time instead of hanging.

use std::time::{Duration, Instant};

use ozg_e2e::*;
use ozg_gateway::daemon::Gateway;
use ozg_gateway::store::embedded::counts;
use ozg_gateway::tools::client::{self, SubmitRequest};

/// The daemon on a runtime of its own.
struct Daemon {
    runtime: Option<tokio::runtime::Runtime>,
    gateway: Option<Gateway>,
    config: TestConfig,
}

impl Daemon {
    fn start(o: &Options) -> Daemon {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("daemon runtime");
        let (config, gateway) = runtime.block_on(start(o));
        Daemon {
            runtime: Some(runtime),
            gateway: Some(gateway),
            config,
        }
    }

    fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().expect("running")
    }

    /// Submissions in the store.
    fn submissions(&self) -> u64 {
        counts(&self.config.data_dir)
            .expect("store readable")
            .submissions
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let (Some(runtime), Some(gateway)) = (self.runtime.take(), self.gateway.take()) else {
            return;
        };
        // A daemon whose workers are stuck (what this test looks for) is left
        // behind instead of waited for.
        if !std::thread::panicking() {
            runtime.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(40), gateway.shutdown()).await;
            });
        }
        runtime.shutdown_background();
    }
}

/// An `antrag` element of the example XML Schema with `n` attributes it does not declare.
fn one_element_with_attributes(n: usize) -> Vec<u8> {
    let mut xml = String::from("<antrag xmlns=\"urn:example:meldebescheinigung\"");
    for i in 0..n {
        xml.push_str(&format!(" a{i}=\"x\""));
    }
    xml.push_str("/>");
    xml.into_bytes()
}

fn xsd_submission(data: Vec<u8>) -> SubmitRequest {
    SubmitRequest {
        leistung: "99777777777777".into(),
        destination: "05315000".into(),
        data,
        data_media_type: "application/xml".into(),
        ..Default::default()
    }
}

/// Status, problem type and time of one submission.
async fn timed_submit(base: String, req: SubmitRequest) -> (u16, String, Duration) {
    let started = Instant::now();
    let answer = client::submit(&portal_client("portal"), &base, &req)
        .await
        .expect("an answer, not a broken connection");
    let slug = answer.body["type"].as_str().unwrap_or_default().to_owned();
    (answer.status, slug, started.elapsed())
}

/// What one attack round showed.
struct Round {
    attackers: Vec<(u16, String, Duration)>,
    legit: (u16, String, Duration),
    probes: usize,
    slowest_probe: Duration,
}

/// Two concurrent attackers, then a legitimate submission while they run; probes
/// `/healthz` every 100 ms until all three are answered. Panics as soon as a probe
/// takes a second or the attack is not answered within `answer_within`.
async fn attack(gw: &Gateway, attributes: usize, answer_within: Duration) -> Round {
    let base = base_url(gw.ingest_addr);
    let healthz = format!("http://{}/healthz", gw.admin_addr);
    let admin = reqwest::Client::new();
    let payload = one_element_with_attributes(attributes);
    let started = Instant::now();
    let attackers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(timed_submit(base.clone(), xsd_submission(payload.clone()))))
        .collect();
    // Let the attack's bodies get on their way first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let example = std::fs::read(repo().join("schemas/examples/meldebescheinigung.xml"))
        .expect("example data");
    let legit = tokio::spawn(timed_submit(base.clone(), xsd_submission(example)));
    let (mut probes, mut slowest_probe) = (0, Duration::ZERO);
    while !(legit.is_finished() && attackers.iter().all(|a| a.is_finished())) {
        assert!(
            started.elapsed() < answer_within,
            "the attack and the legitimate submission were not all answered within {answer_within:?}"
        );
        let probe = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(1), admin.get(&healthz).send()).await;
        let took = probe.elapsed();
        assert!(
            answer.is_ok(),
            "/healthz did not answer within 1 s, {:?} into the attack",
            started.elapsed()
        );
        assert_eq!(answer.unwrap().expect("healthz").status().as_u16(), 200);
        probes += 1;
        slowest_probe = slowest_probe.max(took);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut answers = Vec::new();
    for a in attackers {
        answers.push(a.await.expect("attacker task"));
    }
    Round {
        attackers: answers,
        legit: legit.await.expect("legit task"),
        probes,
        slowest_probe,
    }
}

#[test]
fn costly_xml_is_refused_quickly_and_the_daemon_keeps_serving() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");

    // The attack as found: refused by the attribute cap before any costly work.
    let daemon = Daemon::start(&Options {
        request_timeout: "10s",
        ..Default::default()
    });
    let round = clients.block_on(attack(daemon.gateway(), 150_000, Duration::from_secs(25)));
    println!(
        "capped: attackers {:?}; legit {:?}; {} healthz probes, slowest {:?}",
        round.attackers, round.legit, round.probes, round.slowest_probe
    );
    for (status, slug, took) in &round.attackers {
        assert_eq!(
            (*status, slug.as_str()),
            (400, "/problems/xml-too-many-attributes")
        );
        assert!(*took < Duration::from_secs(10), "refused after {took:?}");
    }
    assert_eq!(round.legit.0, 202, "{:?}", round.legit);
    assert_eq!(
        daemon.submissions(),
        1,
        "only the legitimate submission is stored"
    );
    drop(daemon);

    // The same attack with the cap lifted: the XML Schema check runs (libxml2's
    // attribute handling is quadratic), but on the bounded validation pool, so the
    // attackers get `408` at `request_timeout` (3 s) while it goes on, and
    // the daemon keeps serving.
    let daemon = Daemon::start(&Options {
        request_timeout: "3s",
        limits: "max_xml_attributes = 1000000",
        ..Default::default()
    });
    let round = clients.block_on(attack(daemon.gateway(), 100_000, Duration::from_secs(20)));
    println!(
        "uncapped: attackers {:?}; legit {:?}; {} healthz probes, slowest {:?}",
        round.attackers, round.legit, round.probes, round.slowest_probe
    );
    for (status, slug, took) in &round.attackers {
        assert!(
            (400..500).contains(status),
            "{status} {slug} after {took:?}"
        );
        assert!(*took < Duration::from_secs(13), "answered after {took:?}");
    }
    assert_eq!(round.legit.0, 202, "{:?}", round.legit);
    assert!(round.probes >= 1, "no probe while the attack ran");
    assert_eq!(
        daemon.submissions(),
        1,
        "only the legitimate submission is stored"
    );
}
