//! A scriptable HTTPS receiver standing in for a Fachverfahren (a test double for
//! the remote side only): answers with a status, hangs, or accepts; records every
//! `Ozg-Message-Id` it was sent, duplicates included.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// How the receiver answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// 200 with a JSON receipt.
    Accept,
    /// This status, with an optional `Retry-After` in seconds.
    Status(u16, Option<u64>),
    /// Read the request, never answer.
    Hang,
    /// 200 with this body (e.g. an xdomea receipt).
    Answer(String),
}

#[derive(Default)]
struct State {
    mode: Option<Mode>,
    received: Vec<String>,
    accepted: HashMap<String, usize>,
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    /// Starts on a free loopback port with the demo server certificate.
    pub async fn start(mode: Mode) -> Receiver {
        Self::start_on(0, mode).await
    }

    pub async fn start_on(port: u16, mode: Mode) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let chain =
            ozg_gateway::listen::tls::load_chain(&crate::demo("server.pem")).expect("server.pem");
        let key = {
            use rustls::pki_types::pem::PemObject;
            rustls::pki_types::PrivateKeyDer::from_pem_file(crate::demo("server.key"))
                .expect("server.key")
        };
        let acceptor = crate::tls_proxy::acceptor(chain, key);
        let state = Arc::new(Mutex::new(State {
            mode: Some(mode),
            ..Default::default()
        }));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let st = st.clone();
                        async move {
                            let id = req
                                .headers()
                                .get("ozg-message-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let mode = {
                                let mut s = st.lock().unwrap();
                                s.received.push(id.clone());
                                s.mode.clone().unwrap_or(Mode::Accept)
                            };
                            let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                            match mode {
                                Mode::Accept => {
                                    let envelope: serde_json::Value =
                                        serde_json::from_slice(&body).unwrap_or_default();
                                    assert_eq!(
                                        envelope["message_id"].as_str(),
                                        Some(id.as_str()),
                                        "header and envelope agree"
                                    );
                                    *st.lock().unwrap().accepted.entry(id.clone()).or_default() +=
                                        1;
                                    *resp.body_mut() = Full::new(Bytes::from(format!(
                                        "{{\"receipt\":\"receipt-for-{id}\"}}"
                                    )));
                                }
                                Mode::Status(code, retry_after) => {
                                    *resp.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
                                    if let Some(s) = retry_after {
                                        resp.headers_mut()
                                            .insert("retry-after", s.to_string().parse().unwrap());
                                    }
                                }
                                Mode::Hang => {
                                    tokio::time::sleep(Duration::from_secs(3600)).await;
                                }
                                Mode::Answer(text) => {
                                    *resp.body_mut() = Full::new(Bytes::from(text));
                                }
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Receiver { addr, state }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}/inbox", self.addr.port())
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    /// Every message id received (any answer), in order.
    pub fn received(&self) -> Vec<String> {
        self.state.lock().unwrap().received.clone()
    }

    /// Message ids accepted (answered 200), with how often each.
    pub fn accepted(&self) -> HashMap<String, usize> {
        self.state.lock().unwrap().accepted.clone()
    }
}
