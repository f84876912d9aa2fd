//! A TLS terminator in front of a plain TCP service on loopback — the local
//! RabbitMQ, which listens without TLS. It lets a test drive an adapter's TLS
//! client (`amqps://`: handshake, the broker certificate checked against the
//! configured CA and host name) against the real broker behind it, and present a
//! certificate the adapter must refuse.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

/// A running terminator.
pub struct TlsProxy {
    pub addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
}

impl TlsProxy {
    /// Listens on a free loopback port with this certificate chain and key (PEM)
    /// and forwards every TLS connection's plaintext to `upstream`.
    pub async fn start(upstream: SocketAddr, chain_pem: &str, key_pem: &str) -> TlsProxy {
        Self::start_on([127, 0, 0, 1].into(), upstream, chain_pem, key_pem).await
    }

    /// The same on another loopback address (e.g. 127.0.0.2, which the demo server
    /// certificate does not name).
    pub async fn start_on(
        ip: std::net::IpAddr,
        upstream: SocketAddr,
        chain_pem: &str,
        key_pem: &str,
    ) -> TlsProxy {
        let (chain, key) = parse(chain_pem, key_pem);
        Self::serve(ip, upstream, acceptor(chain, key)).await
    }

    /// Like [`TlsProxy::start`], but the client must present a certificate issued
    /// by `client_ca_pem` (a broker with mutual TLS).
    pub async fn start_mutual(
        upstream: SocketAddr,
        chain_pem: &str,
        key_pem: &str,
        client_ca_pem: &str,
    ) -> TlsProxy {
        let (chain, key) = parse(chain_pem, key_pem);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
            roots.add(ca.expect("CA PEM")).expect("CA");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("tls");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        Self::serve([127, 0, 0, 1].into(), upstream, acceptor).await
    }

    async fn serve(
        ip: std::net::IpAddr,
        upstream: SocketAddr,
        acceptor: tokio_rustls::TlsAcceptor,
    ) -> TlsProxy {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = handshakes.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, counted) = (acceptor.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut plain) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsProxy { addr, handshakes }
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

fn parse(chain_pem: &str, key_pem: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
    (chain, key)
}

/// A TLS server configuration of the tests' receivers: aws-lc-rs, TLS 1.2 and 1.3,
/// no client certificates.
pub fn acceptor(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> tokio_rustls::TlsAcceptor {
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("tls");
    tokio_rustls::TlsAcceptor::from(Arc::new(tls))
}
