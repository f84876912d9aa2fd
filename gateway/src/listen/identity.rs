//! Who is asking: the portals and operators registered for the client
//! certificates a listener accepts, by SHA-256 fingerprint or subject. A subject
//! is matched as a parsed name (RDN by RDN, attribute type and value), never as
//! display text: see [`crate::listen::dn`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::listen::dn::Dn;
use crate::listen::tls::PeerCert;
use crate::model::portal::Portal;

/// Who a client certificate belongs to.
#[derive(Debug, Clone)]
pub enum Client {
    Portal(Arc<Portal>),
    /// An operator, by id.
    Operator(Arc<str>),
}

/// How a client certificate is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// SHA-256 of the certificate (hex, lower case).
    Fingerprint(String),
    /// The subject, attribute by attribute.
    Subject(Dn),
}

/// Portals and operators by the certificate they present.
#[derive(Debug, Default)]
pub struct Portals {
    by_fingerprint: HashMap<String, Arc<Portal>>,
    by_subject: HashMap<Dn, Arc<Portal>>,
    operators_by_fingerprint: HashMap<String, Arc<str>>,
    operators_by_subject: HashMap<Dn, Arc<str>>,
}

impl Portals {
    /// Registers a portal for a certificate.
    pub fn add_portal(&mut self, pin: Pin, portal: Arc<Portal>) {
        match pin {
            Pin::Fingerprint(fp) => self.by_fingerprint.insert(fp, portal),
            Pin::Subject(subject) => self.by_subject.insert(subject, portal),
        };
    }

    /// Registers an operator (by id) for a certificate.
    pub fn add_operator(&mut self, pin: Pin, id: Arc<str>) {
        match pin {
            Pin::Fingerprint(fp) => self.operators_by_fingerprint.insert(fp, id),
            Pin::Subject(subject) => self.operators_by_subject.insert(subject, id),
        };
    }

    /// Some registered portal (for benchmarks that need a sender).
    pub fn any(&self) -> Option<Arc<Portal>> {
        self.by_fingerprint
            .values()
            .chain(self.by_subject.values())
            .next()
            .cloned()
    }

    /// The portal or operator a (chain-checked) client certificate belongs to.
    pub fn identify(&self, peer: &PeerCert) -> Option<Client> {
        let dn = peer.subject_dn.as_ref();
        let portal = self
            .by_fingerprint
            .get(&peer.sha256)
            .or_else(|| dn.and_then(|dn| self.by_subject.get(dn)));
        if let Some(p) = portal {
            return Some(Client::Portal(p.clone()));
        }
        self.operators_by_fingerprint
            .get(&peer.sha256)
            .or_else(|| dn.and_then(|dn| self.operators_by_subject.get(dn)))
            .map(|id| Client::Operator(id.clone()))
    }
}
