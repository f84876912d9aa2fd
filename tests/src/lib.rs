//! Test harness for the end-to-end tests: configs in temporary directories, the
//! daemon in-process or as a child process, portal clients with real certificates.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub mod cluster;
pub mod pki;
pub mod receiver;
pub mod tls_proxy;

use ozg_gateway::config::Config;
use ozg_gateway::daemon::Gateway;
use ozg_gateway::tools::client::PortalIdentity;
use ozg_gateway::tools::demo_pki::{Algorithm, DemoCa, Usage};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of the demo PKI.
pub fn demo(name: &str) -> PathBuf {
    repo().join("certs-example").join(name)
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Knobs of the test config.
#[derive(Debug, Clone)]
pub struct Options {
    pub ingest_port: u16,
    pub admin_port: u16,
    pub max_body: &'static str,
    /// `ingest.limits.memory_budget`.
    pub memory_budget: &'static str,
    pub request_timeout: &'static str,
    pub header_timeout: &'static str,
    /// `ingest.limits.max_connections`, `max_connections_per_address`, `write_timeout`.
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// `ingest.limits.max_connections_per_client`.
    pub max_connections_per_client: usize,
    pub write_timeout: &'static str,
    /// Extra TOML lines for `[ingest.limits]`.
    pub limits: &'static str,
    /// URL of the `fachverfahren-demo` http target.
    pub receiver_url: String,
    /// Extra TOML for `[delivery]`.
    pub delivery: &'static str,
    /// An `amqp-demo` target for Leistung 99888888888888: (exchange, routing key).
    pub amqp: Option<(String, String)>,
    /// Its broker URL instead of [`AMQP_URL`]; an `amqps://` URL trusts the demo CA.
    pub amqp_url: Option<String>,
    /// Its client certificate and key files.
    pub amqp_client: Option<(PathBuf, PathBuf)>,
    /// Cluster mode: (PostgreSQL database name, broker prefix) instead of the embedded store.
    pub cluster: Option<(String, String)>,
    /// Tenants: portal-demo and dms-demo belong to `musterstadt`,
    /// portal2-demo and fachverfahren-demo to `beispielkreis`; operator-demo sees all.
    pub tenants: bool,
    /// The admin listener over HTTPS (`[admin] tls = true`).
    pub admin_tls: bool,
    /// TOML appended to the config (e.g. more `[[operators]]`).
    pub extra: String,
    /// The seal: (certificate file, `seal_key` value) instead of the demo seal.
    pub seal: Option<(PathBuf, String)>,
    /// A seal rotation: the value of `pki.seals` (TOML), instead of both.
    pub seals: Option<String>,
    /// TOML right after `[pki]` (e.g. a `[pki.pkcs11]` table).
    pub pki_extra: String,
    /// `pki.trust_anchors` instead of the demo CA.
    pub trust_anchors: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ingest_port: 0,
            admin_port: 0,
            max_body: "4MiB",
            memory_budget: "512MiB",
            request_timeout: "30s",
            header_timeout: "10s",
            max_connections: 4096,
            max_connections_per_address: 256,
            max_connections_per_client: 512,
            write_timeout: "30s",
            limits: "",
            receiver_url: "https://localhost:1/inbox".into(),
            delivery: FAST_DELIVERY,
            amqp: None,
            amqp_url: None,
            amqp_client: None,
            cluster: None,
            tenants: false,
            admin_tls: false,
            extra: String::new(),
            seal: None,
            seals: None,
            pki_extra: String::new(),
            trust_anchors: None,
        }
    }
}

/// The local RabbitMQ (started by `.ci/run` where absent).
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A channel to the local RabbitMQ, for declaring and reading test queues.
pub async fn amqp_channel() -> lapin::Channel {
    let props = lapin::ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    let conn = lapin::Connection::connect(AMQP_URL, props)
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 (.ci/run starts it)");
    conn.create_channel().await.expect("channel")
}

/// Declares a durable direct exchange and a durable queue bound with `key`.
pub async fn amqp_declare(ch: &lapin::Channel, exchange: &str, queue: &str, key: &str) {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        exchange,
        lapin::ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    let q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue, q, FieldTable::default())
        .await
        .expect("queue");
    ch.queue_bind(
        queue,
        exchange,
        key,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
}

/// Takes every message waiting in `queue`: (message-id, delivery mode, body).
pub async fn amqp_drain(ch: &lapin::Channel, queue: &str) -> Vec<(String, u8, Vec<u8>)> {
    use lapin::options::BasicGetOptions;
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue, BasicGetOptions { no_ack: true })
        .await
        .expect("basic_get")
    {
        let props = &m.delivery.properties;
        out.push((
            props
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            props.delivery_mode().unwrap_or(0),
            m.delivery.data.clone(),
        ));
    }
    out
}

/// Retries in milliseconds so tests finish quickly (the policy itself is unit-tested).
pub const FAST_DELIVERY: &str = r#"
concurrency = 4
attempt_timeout = "2s"
shutdown_grace = "1s"
retry = { initial = "50ms", factor = 2.0, cap = "200ms", jitter = 0.1, max_attempts = 1000, max_age = "1h" }
breaker = { failures = 1000, open_for = "100ms", max_open_for = "200ms" }
"#;

/// A gateway config in a temporary directory: the shipped example's portals,
/// Leistungen and targets, plus a Leistung that portal-demo may use but that has no route.
pub struct TestConfig {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub data_dir: PathBuf,
    /// The filedrop directory of `dms-demo`.
    pub outbox: PathBuf,
}

pub fn test_config(o: &Options) -> TestConfig {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("var");
    let c = |name: &str| demo(name).display().to_string();
    let schema = repo()
        .join("schemas/examples/hundesteuer.schema.json")
        .display()
        .to_string();
    let xsd = repo()
        .join("schemas/examples/meldebescheinigung.xsd")
        .display()
        .to_string();
    let text = format!(
        r#"
{store}

[ingest]
listen = "127.0.0.1:{ingest_port}"
certificate = "{server_pem}"
key = "{server_key}"
client_ca = "{client_ca}"

[ingest.limits]
max_body = "{max_body}"
max_part = "{max_body}"
memory_budget = "{memory_budget}"
request_timeout = "{request_timeout}"
header_timeout = "{header_timeout}"
max_connections = {max_connections}
max_connections_per_address = {max_connections_per_address}
max_connections_per_client = {max_connections_per_client}
write_timeout = "{write_timeout}"
{limits}

[admin]
listen = "127.0.0.1:{admin_port}"
tls = {admin_tls}

[pki]
trust_anchors = "{trust_anchors}"
{seal_lines}
privacy_key = "{privacy_key}"
{pki_extra}

[log]
level = "warn"

[[portals]]
id = "portal-demo"
certificate = "{portal}"
leistungen = ["99050012104000", "99115005001000", "99999999999999", "99888888888888", "99777777777777"]
{tenant_a}

[[operators]]
id = "operator-demo"
certificate = "{operator}"
{all_tenants}

[[portals]]
id = "portal2-demo"
certificate = "{portal2}"
leistungen = ["99115005001000"]
destinations = ["05*"]
{tenant_b}

[leistungen.99050012104000]
name = "Hundesteuer Anmeldung (example)"
schema = "{schema}"

[leistungen.99777777777777]
name = "XSD example"
schema = "{xsd}"

[delivery]
{delivery}

[targets.dms-demo]
certificate = "{rsa}"
adapter = {{ type = "filedrop", dir = "{outbox}" }}
{tenant_a}

[targets.fachverfahren-demo]
certificate = "{ec}"
adapter = {{ type = "http", url = "{receiver_url}", server_ca = "{ca}", timeout = "1s" }}
{tenant_b}

[[routes]]
leistung = "99050012104000"
targets = ["fachverfahren-demo"]

[[routes]]
leistung = "99115005001000"
targets = ["dms-demo", "fachverfahren-demo"]

[[routes]]
leistung = "99777777777777"
targets = ["dms-demo"]
{amqp}
{extra}
"#,
        store = match &o.cluster {
            Some((database, prefix)) => format!(
                "[store]\ntype = \"cluster\"\ndatabase = \"host=127.0.0.1 port=5432 user=postgres dbname={database}\"\npool_size = 8\n\n[store.broker]\nurl = \"{AMQP_URL}\"\nprefix = \"{prefix}\"\n"
            ),
            None => format!(
                "[store]\ntype = \"embedded\"\ndata_dir = \"{}\"\n",
                data_dir.display()
            ),
        },
        outbox = dir.path().join("outbox").display(),
        admin_tls = o.admin_tls,
        tenant_a = if o.tenants { "tenant = \"musterstadt\"" } else { "" },
        tenant_b = if o.tenants { "tenant = \"beispielkreis\"" } else { "" },
        all_tenants = if o.tenants { "tenants = [\"*\"]" } else { "" },
        extra = o.extra,
        receiver_url = o.receiver_url,
        delivery = o.delivery,
        amqp = match &o.amqp {
            Some((exchange, key)) => {
                let url = o.amqp_url.as_deref().unwrap_or(AMQP_URL);
                let mut ca = if url.starts_with("amqps://") {
                    format!(", ca = \"{}\"", c("ca.pem"))
                } else {
                    String::new()
                };
                if let Some((cert, key)) = &o.amqp_client {
                    ca += &format!(
                        ", client_certificate = \"{}\", client_key = \"{}\"",
                        cert.display(),
                        key.display()
                    );
                }
                format!(
                    "[targets.amqp-demo]\ncertificate = \"{}\"\nadapter = {{ type = \"amqp\", url = \"{url}\", exchange = \"{exchange}\", routing_key = \"{key}\", confirm_timeout = \"2s\"{ca} }}\n\n[[routes]]\nleistung = \"99888888888888\"\ntargets = [\"amqp-demo\"]\n",
                    c("recipient-ec.pem")
                )
            }
            None => String::new(),
        },
        ingest_port = o.ingest_port,
        admin_port = o.admin_port,
        max_body = o.max_body,
        memory_budget = o.memory_budget,
        request_timeout = o.request_timeout,
        header_timeout = o.header_timeout,
        max_connections = o.max_connections,
        max_connections_per_address = o.max_connections_per_address,
        max_connections_per_client = o.max_connections_per_client,
        write_timeout = o.write_timeout,
        limits = o.limits,
        server_pem = c("server.pem"),
        server_key = c("server.key"),
        ca = c("ca.pem"),
        client_ca = test_client_ca().1.display(),
        seal_lines = match (&o.seals, &o.seal) {
            (Some(seals), _) => format!("seals = {seals}"),
            (None, Some((cert, key))) => format!(
                "seal_certificate = \"{}\"\nseal_key = \"{key}\"",
                cert.display()
            ),
            (None, None) => format!(
                "seal_certificate = \"{}\"\nseal_key = \"{}\"",
                c("seal.pem"),
                c("seal.key")
            ),
        },
        pki_extra = o.pki_extra,
        trust_anchors = o
            .trust_anchors
            .as_ref()
            .map_or_else(|| c("ca.pem"), |p| p.display().to_string()),
        privacy_key = c("privacy.key"),
        portal = c("portal.pem"),
        portal2 = c("portal2.pem"),
        operator = c("operator.pem"),
        rsa = c("recipient-rsa.pem"),
        ec = c("recipient-ec.pem"),
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).expect("write config");
    let outbox = dir.path().join("outbox");
    TestConfig {
        dir,
        path,
        data_dir,
        outbox,
    }
}

/// Starts a scripted receiver and the daemon with `fachverfahren-demo` pointing at it.
pub async fn start_with_receiver(
    mode: receiver::Mode,
) -> (receiver::Receiver, TestConfig, Gateway) {
    let rx = receiver::Receiver::start(mode).await;
    let (tc, gw) = start(&Options {
        receiver_url: rx.url(),
        ..Default::default()
    })
    .await;
    (rx, tc, gw)
}

/// Starts the daemon in-process on free ports.
pub async fn start(o: &Options) -> (TestConfig, Gateway) {
    let tc = test_config(o);
    let gw = start_from(&tc).await;
    (tc, gw)
}

/// Starts the daemon in-process on the config file of `tc` as it is now (again,
/// after a test stopped it or edited the file).
pub async fn start_from(tc: &TestConfig) -> Gateway {
    let config = Config::load(&tc.path).expect("config parses");
    let setup = ozg_gateway::daemon::setup::setup(config).expect("config is valid");
    Gateway::start(setup).await.expect("gateway starts")
}

pub fn base_url(addr: SocketAddr) -> String {
    format!("https://localhost:{}", addr.port())
}

/// An HTTPS client presenting `cert`/`key` and trusting the demo CA.
pub fn client_with(cert: &Path, key: &Path) -> reqwest::Client {
    ozg_gateway::tools::client::http_client(&PortalIdentity {
        cert: cert.into(),
        key: key.into(),
        ca: demo("ca.pem"),
    })
    .expect("client")
}

/// A client presenting a demo certificate by stem (`portal`, `portal2`, `operator`).
pub fn portal_client(stem: &str) -> reqwest::Client {
    client_with(&demo(&format!("{stem}.pem")), &demo(&format!("{stem}.key")))
}

/// A client without any client certificate.
pub fn anonymous_client() -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in ozg_gateway::listen::tls::load_chain(&demo("ca.pem")).expect("ca") {
        roots.add(c).expect("root");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client")
}

/// Writes a certificate/key pair into `dir` and returns a client using it.
pub fn client_from_issued(
    dir: &Path,
    stem: &str,
    issued: &ozg_gateway::tools::demo_pki::Issued,
) -> reqwest::Client {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    std::fs::write(&cert, &issued.cert_pem).expect("write cert");
    std::fs::write(&key, &issued.key_pem).expect("write key");
    client_with(&cert, &key)
}

/// A client certificate from a CA the gateway does not trust.
pub fn foreign_ca_client(dir: &Path) -> reqwest::Client {
    let ca = DemoCa::generate("foreign CA", 1).expect("ca");
    let issued = ca
        .issue("portal-demo", Usage::Client, Algorithm::EcP256, 1)
        .expect("leaf");
    client_from_issued(dir, "foreign", &issued)
}

/// A second client CA the test gateways trust besides the demo CA (generated once per
/// test process), for certificates the demo PKI does not ship, such as expired ones.
pub(crate) fn test_client_ca() -> &'static (DemoCa, PathBuf) {
    static CA: std::sync::OnceLock<(DemoCa, PathBuf)> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let ca = DemoCa::generate("test client CA", 1).expect("test CA");
        let demo_ca = std::fs::read_to_string(demo("ca.pem")).expect("ca.pem");
        let path =
            std::env::temp_dir().join(format!("ozg-e2e-client-ca-{}.pem", std::process::id()));
        std::fs::write(&path, format!("{demo_ca}{}", ca.cert_pem())).expect("write CA bundle");
        (ca, path)
    })
}

/// A client certificate of a trusted client CA that expired yesterday.
pub fn expired_client(dir: &Path) -> reqwest::Client {
    let now = time::OffsetDateTime::now_utc();
    let issued = test_client_ca()
        .0
        .issue_between(
            "portal-demo",
            Usage::Client,
            Algorithm::EcP256,
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )
        .expect("leaf");
    client_from_issued(dir, "expired", &issued)
}

/// A client certificate of the test client CA for `cn`, written into `dir`:
/// (certificate, key) files, to register and to present.
pub fn issue_client(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let issued = test_client_ca()
        .0
        .issue(cn, Usage::Client, Algorithm::EcP256, 1)
        .expect("leaf");
    let cert = dir.join(format!("{cn}.pem"));
    let key = dir.join(format!("{cn}.key"));
    std::fs::write(&cert, &issued.cert_pem).expect("write cert");
    std::fs::write(&key, &issued.key_pem).expect("write key");
    (cert, key)
}

/// A valid client certificate of a trusted client CA that no portal or operator is registered for.
pub fn unregistered_client(dir: &Path) -> reqwest::Client {
    let issued = test_client_ca()
        .0
        .issue("stranger", Usage::Client, Algorithm::EcP256, 1)
        .expect("leaf");
    client_from_issued(dir, "stranger", &issued)
}

/// Every audit record of `event` (e.g. `changed`), in order, as JSON.
pub async fn audit_records(gw: &Gateway, event: &str) -> Vec<serde_json::Value> {
    let found = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = found.clone();
    let event = event.to_owned();
    gw.store
        .read_audit(Box::new(move |log| {
            let _ = log.each_record(&mut |_, text, _| {
                let r: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if r["event"] == event.as_str() {
                    out.lock().unwrap().push(r);
                }
                true
            });
        }))
        .await
        .expect("audit log readable");
    let records = found.lock().unwrap().clone();
    records
}

/// A client for plain HTTP (the admin listener on loopback).
pub fn plain_client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::new()
}

/// Reads one sample of a Prometheus metric (0 if absent).
pub async fn metric(admin: SocketAddr, name_and_labels: &str) -> f64 {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("metrics reachable")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A small xorshift for random moments in the crash tests (seeded from the
/// clock and printed, so a failing run can be repeated).
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from the clock; prints the seed.
    pub fn from_clock() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        println!("seed {seed}");
        Rng(seed)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The daemon as a child process (for kill -9 tests).
pub struct DaemonProcess {
    pub child: Child,
    pub ingest: SocketAddr,
}

impl DaemonProcess {
    /// Starts `<bin> serve --config <path>` and waits until the ingest port accepts.
    /// `bin` is `env!("CARGO_BIN_EXE_ozg-gateway-e2e")` (the daemon's CLI, built for the tests).
    pub fn spawn(bin: &str, config: &Path, ingest_port: u16) -> DaemonProcess {
        let mut child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("daemon starts");
        let ingest: SocketAddr = ([127, 0, 0, 1], ingest_port).into();
        for _ in 0..200 {
            if std::net::TcpStream::connect(ingest).is_ok() {
                return DaemonProcess { child, ingest };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("daemon did not open {ingest} within 5 s");
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill_9(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reaped");
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// True if any file under `dir` contains `needle`.
pub fn dir_contains(dir: &Path, needle: &[u8]) -> bool {
    files_under(dir).iter().any(|f| {
        std::fs::read(f)
            .map(|b| b.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    })
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The delivery states of a submission, by target.
pub async fn states(
    gw: &Gateway,
    submission_id: &str,
) -> std::collections::BTreeMap<String, String> {
    gw.store
        .submission(submission_id)
        .await
        .expect("store readable")
        .map(|s| {
            s.deliveries
                .into_iter()
                .map(|d| (d.target, d.state.as_str().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A python3 that has jwcrypto: the system one if it has it, else a virtualenv
/// under `target/` into which `tests/interop/requirements.txt` is installed once.
pub fn python() -> PathBuf {
    let has_jwcrypto = |py: &std::path::Path| {
        Command::new(py)
            .args(["-c", "import jwcrypto, zeep, lxml, fitconnect"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let system = PathBuf::from("python3");
    if has_jwcrypto(&system) {
        return system;
    }
    let venv = repo().join("target/interop-venv");
    let py = venv.join("bin/python3");
    if !has_jwcrypto(&py) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "python3 -m venv failed: install python3 with venv"
        );
        let installed = Command::new(&py)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(repo().join("tests/interop/requirements.txt"))
            .status();
        assert!(
            installed.is_ok_and(|s| s.success()),
            "installing jwcrypto, zeep, lxml and fitconnect failed (needs PyPI)"
        );
    }
    py
}

/// `bin config check` of a test config made from `o`: its exit code and
/// what it printed (stdout, then stderr).
pub fn config_check(bin: &str, o: &Options) -> (Option<i32>, String) {
    let tc = test_config(o);
    let out = Command::new(bin)
        .args(["config", "check", "--config"])
        .arg(&tc.path)
        .output()
        .expect("the gateway binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `bin audit verify --config CONFIG [--data-dir DIR]`: its exit code and
/// what it printed (stdout, then stderr).
pub fn audit_verify(bin: &str, config: &Path, data_dir: Option<&Path>) -> (Option<i32>, String) {
    let mut c = Command::new(bin);
    c.args(["audit", "verify", "--config"]).arg(config);
    if let Some(dir) = data_dir {
        c.arg("--data-dir").arg(dir);
    }
    let out = c.output().expect("the gateway binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A copy of the test's data directory with `sql` applied to it (to show
/// what `audit verify` makes of a changed log).
pub fn data_dir_copy_with(tc: &TestConfig, name: &str, sql: &str) -> PathBuf {
    let copy = tc.dir.path().join(format!("copy-{name}"));
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["gateway.db", "gateway.db-wal"] {
        let src = tc.data_dir.join(f);
        if src.exists() {
            std::fs::copy(&src, copy.join(f)).unwrap();
        }
    }
    let conn = rusqlite::Connection::open(copy.join("gateway.db")).unwrap();
    conn.execute_batch(sql).unwrap();
    copy
}

/// Runs `bin open ENVELOPE` as the demo recipient `stem` (its key and
/// certificate), trusting the demo CA and seal, writing the parts to `out`.
pub fn open_envelope(bin: &str, envelope: &Path, stem: &str, out: &Path) -> std::process::Output {
    Command::new(bin)
        .arg("open")
        .arg(envelope)
        .arg("--key")
        .arg(demo(&format!("{stem}.key")))
        .arg("--cert")
        .arg(demo(&format!("{stem}.pem")))
        .arg("--trust")
        .arg(demo("ca.pem"))
        .arg("--seal")
        .arg(demo("seal.pem"))
        .arg("--out")
        .arg(out)
        .output()
        .expect("the gateway binary runs")
}

/// The demo receiver (recipient `recipient-ec`, the demo seal pinned) on a
/// free port, storing into a temporary inbox, misbehaving as `broken` says;
/// it runs until the sender is used or dropped.
pub fn demo_receiver(
    broken: Option<ozg_gateway::tools::demo_receiver::Broken>,
) -> (
    u16,
    tokio::sync::oneshot::Sender<()>,
    tempfile::TempDir,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    demo_receiver_with(broken, None, None)
}

/// [`demo_receiver`], also consuming from RabbitMQ as `amqp` says and
/// reading an XTA message box as `xta` says.
pub fn demo_receiver_with(
    broken: Option<ozg_gateway::tools::demo_receiver::Broken>,
    amqp: Option<ozg_gateway::tools::demo_receiver::AmqpInbox>,
    xta: Option<ozg_gateway::tools::demo_receiver::XtaInbox>,
) -> (
    u16,
    tokio::sync::oneshot::Sender<()>,
    tempfile::TempDir,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let port = free_port();
    let inbox = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(ozg_gateway::tools::demo_receiver::run(
        ozg_gateway::tools::demo_receiver::ReceiverOptions {
            listen: ([127, 0, 0, 1], port).into(),
            tls_cert: demo("server.pem"),
            tls_key: demo("server.key"),
            key: demo("recipient-ec.key"),
            cert: Some(demo("recipient-ec.pem")),
            trust: demo("ca.pem"),
            seals: vec![demo("seal.pem")],
            out: inbox.path().into(),
            accept_only: false,
            broken,
            amqp,
            xta,
        },
        async move {
            let _ = stopped.await;
        },
    ));
    (port, stop, inbox, task)
}
