//! PKI helpers for the certificate tests: client certificates with exactly the
//! subject and usages a test needs (issued by the test client CA), CRLs of the
//! demo CA made by `openssl ca` (an implementation independent of the gateway's
//! own crates) and of the test client CA (rcgen), and a small HTTPS server that
//! serves a CRL file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ozg_gateway::tools::demo_pki::{Algorithm, Issued};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose,
};

use crate::{client_from_issued, demo, test_client_ca};

/// A certificate of the test client CA with this subject (attributes in this
/// order, one per RDN), key usages and extended key usages, valid for a year.
pub fn issue_client(
    subject: &[(DnType, &str)],
    key_usages: Vec<KeyUsagePurpose>,
    extended: Vec<ExtendedKeyUsagePurpose>,
) -> Issued {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for (t, v) in subject {
        dn.push(t.clone(), *v);
    }
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = key_usages;
    params.extended_key_usages = extended;
    test_client_ca()
        .0
        .sign(params, Algorithm::EcP256)
        .expect("test certificate")
}

/// A client presenting a certificate made by [`issue_client`].
pub fn client_issued_with(
    dir: &Path,
    stem: &str,
    subject: &[(DnType, &str)],
    key_usages: Vec<KeyUsagePurpose>,
    extended: Vec<ExtendedKeyUsagePurpose>,
) -> reqwest::Client {
    client_from_issued(dir, stem, &issue_client(subject, key_usages, extended))
}

/// A CRL (PEM) of the test client CA listing `revoked`, valid for a week — or,
/// with `stale`, one whose nextUpdate passed yesterday.
pub fn test_ca_crl(revoked: &[&str], stale: bool) -> String {
    let now = time::OffsetDateTime::now_utc();
    let (this, next) = if stale {
        (now - time::Duration::days(8), now - time::Duration::days(1))
    } else {
        (
            now - time::Duration::minutes(1),
            now + time::Duration::days(7),
        )
    };
    test_client_ca()
        .0
        .crl(revoked, this, next)
        .expect("CRL of the test client CA")
}

/// The demo CA (certs-example/) run by `openssl ca` in a directory of its own:
/// revokes certificates and writes CRLs (version 2, with the CRL number and
/// authority key identifier that RFC 5280 requires).
pub struct OpensslCa {
    dir: PathBuf,
}

impl OpensslCa {
    pub fn new(dir: &Path) -> OpensslCa {
        std::fs::create_dir_all(dir).expect("CA dir");
        std::fs::write(dir.join("index.txt"), "").expect("index");
        std::fs::write(dir.join("crlnumber"), "01\n").expect("crlnumber");
        std::fs::write(
            dir.join("ca.cnf"),
            "[ca]\ndefault_ca = demo\n[demo]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
             default_md = sha256\ndefault_crl_days = 7\ncrl_extensions = crl_ext\n\
             [crl_ext]\nauthorityKeyIdentifier = keyid:always\n",
        )
        .expect("ca.cnf");
        OpensslCa { dir: dir.into() }
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .arg("ca")
            .args(["-config", "ca.cnf", "-batch", "-keyfile"])
            .arg(demo("ca.key"))
            .arg("-cert")
            .arg(demo("ca.pem"))
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl ca {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Records `cert` (a PEM file the demo CA issued) as revoked.
    pub fn revoke(&self, cert: &Path) {
        self.openssl(&["-revoke", &cert.display().to_string()]);
    }

    /// Writes a new CRL to `out` (atomically: written beside it, then renamed).
    pub fn write_crl(&self, out: &Path) {
        let tmp = out.with_extension("new");
        self.openssl(&["-gencrl", "-out", &tmp.display().to_string()]);
        std::fs::rename(&tmp, out).expect("CRL in place");
    }
}

/// Serves the current content of `file` to every GET over HTTPS with the demo
/// server certificate (names localhost and 127.0.0.1); returns the address.
pub async fn serve_file_https(file: PathBuf) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let chain = ozg_gateway::listen::tls::load_chain(&demo("server.pem")).expect("server.pem");
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_file(demo("server.key")).expect("server.key");
    let acceptor = crate::tls_proxy::acceptor(chain, key);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, file) = (acceptor.clone(), file.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    let body = std::fs::read(&file).unwrap_or_default();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(body),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}
