//! Who is asking: the portals and operators registered for the client
//! certificates a listener accepts, by SHA-256 fingerprint or subject. A subject
//! is matched as a parsed name (RDN by RDN, attribute type and value), never as
//! display text: see [`crate::listen::dn`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::listen::dn::Dn;
use crate::listen::tls::PeerCert;
use crate::model::portal::{Operator, Portal, Reader};

/// Who a client certificate belongs to.
#[derive(Debug, Clone)]
pub enum Client {
    Portal(Arc<Portal>),
    /// A Fachverfahren sending replies: the targets it may reply for.
    Replier(Arc<[String]>),
    /// An operator of the operator API.
    Operator(Arc<Operator>),
}

/// Who a client of the XTA listener is: a sender (a registered portal), the
/// reader of message boxes, or both (a DMS that reads its box and sends its
/// confirmations uses one certificate).
#[derive(Debug, Clone)]
pub struct XtaCaller {
    pub sender: Option<Arc<Portal>>,
    pub reader: Option<Arc<Reader>>,
}

impl XtaCaller {
    /// Is `account` one of this caller's XTA accounts?
    pub fn owns(&self, account: &str) -> bool {
        self.sender
            .as_ref()
            .is_some_and(|p| p.xta_account == account)
            || self.reader.as_ref().is_some_and(|r| r.account == account)
    }

    /// Its accounts, for messages and connection counting.
    pub fn accounts(&self) -> String {
        let s = self.sender.as_ref().map(|p| p.xta_account.as_str());
        let r = self.reader.as_ref().map(|r| r.account.as_str());
        match (s, r) {
            (Some(s), Some(r)) if s != r => format!("{s}+{r}"),
            (Some(a), _) | (None, Some(a)) => a.to_owned(),
            (None, None) => String::new(),
        }
    }
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
    operators_by_fingerprint: HashMap<String, Arc<Operator>>,
    operators_by_subject: HashMap<Dn, Arc<Operator>>,
    readers_by_fingerprint: HashMap<String, Arc<Reader>>,
    readers_by_subject: HashMap<Dn, Arc<Reader>>,
    /// Targets whose Fachverfahren sends replies with a certificate (`reply_client`).
    repliers_by_fingerprint: HashMap<String, Vec<String>>,
    repliers_by_subject: HashMap<Dn, Vec<String>>,
}

impl Portals {
    /// Registers a portal for a certificate.
    pub fn add_portal(&mut self, pin: Pin, portal: Arc<Portal>) {
        match pin {
            Pin::Fingerprint(fp) => self.by_fingerprint.insert(fp, portal),
            Pin::Subject(subject) => self.by_subject.insert(subject, portal),
        };
    }

    /// Registers an operator for a certificate.
    pub fn add_operator(&mut self, pin: Pin, id: Arc<Operator>) {
        match pin {
            Pin::Fingerprint(fp) => self.operators_by_fingerprint.insert(fp, id),
            Pin::Subject(subject) => self.operators_by_subject.insert(subject, id),
        };
    }

    /// Registers a message-box reader for a certificate; returns the reader
    /// already registered for it, if another one is.
    pub fn add_reader(&mut self, pin: Pin, reader: Arc<Reader>) -> Option<Arc<Reader>> {
        let before = match pin {
            Pin::Fingerprint(fp) => self.readers_by_fingerprint.insert(fp, reader.clone()),
            Pin::Subject(subject) => self.readers_by_subject.insert(subject, reader.clone()),
        };
        before.filter(|b| !Arc::ptr_eq(b, &reader))
    }

    /// Lets a certificate send replies for `target` (its `reply_client`).
    pub fn add_replier(&mut self, pin: Pin, target: &str) {
        let list = match pin {
            Pin::Fingerprint(fp) => self.repliers_by_fingerprint.entry(fp).or_default(),
            Pin::Subject(subject) => self.repliers_by_subject.entry(subject).or_default(),
        };
        list.push(target.to_owned());
    }

    /// The message-box reader a (chain-checked) client certificate belongs to.
    pub fn reader(&self, peer: &PeerCert) -> Option<Arc<Reader>> {
        let dn = peer.subject_dn.as_ref();
        self.readers_by_fingerprint
            .get(&peer.sha256)
            .or_else(|| dn.and_then(|dn| self.readers_by_subject.get(dn)))
            .cloned()
    }

    /// The targets a (chain-checked) client certificate may send replies for:
    /// those it is the `reply_client` of, and the message boxes it reads.
    pub fn replier(&self, peer: &PeerCert) -> Vec<String> {
        let dn = peer.subject_dn.as_ref();
        let mut targets: Vec<String> = self
            .repliers_by_fingerprint
            .get(&peer.sha256)
            .into_iter()
            .chain(dn.and_then(|dn| self.repliers_by_subject.get(dn)))
            .flatten()
            .cloned()
            .collect();
        if let Some(r) = self.reader(peer) {
            targets.extend(r.targets.iter().cloned());
        }
        targets.sort();
        targets.dedup();
        targets
    }

    /// The XTA caller a (chain-checked) client certificate belongs to.
    pub fn identify_xta(&self, peer: &PeerCert) -> Option<XtaCaller> {
        let dn = peer.subject_dn.as_ref();
        let sender = self
            .by_fingerprint
            .get(&peer.sha256)
            .or_else(|| dn.and_then(|dn| self.by_subject.get(dn)))
            .cloned();
        let reader = self
            .readers_by_fingerprint
            .get(&peer.sha256)
            .or_else(|| dn.and_then(|dn| self.readers_by_subject.get(dn)))
            .cloned();
        (sender.is_some() || reader.is_some()).then_some(XtaCaller { sender, reader })
    }

    /// Some registered portal (for benchmarks that need a sender).
    pub fn any(&self) -> Option<Arc<Portal>> {
        self.by_fingerprint
            .values()
            .chain(self.by_subject.values())
            .next()
            .cloned()
    }

    /// The portal, replier or operator a (chain-checked) client certificate
    /// belongs to, in that order.
    pub fn identify(&self, peer: &PeerCert) -> Option<Client> {
        let dn = peer.subject_dn.as_ref();
        let portal = self
            .by_fingerprint
            .get(&peer.sha256)
            .or_else(|| dn.and_then(|dn| self.by_subject.get(dn)));
        if let Some(p) = portal {
            return Some(Client::Portal(p.clone()));
        }
        let targets = self.replier(peer);
        if !targets.is_empty() {
            return Some(Client::Replier(targets.into()));
        }
        self.operator(peer).map(Client::Operator)
    }

    /// The operator a (chain-checked) client certificate belongs to.
    pub fn operator(&self, peer: &PeerCert) -> Option<Arc<Operator>> {
        let dn = peer.subject_dn.as_ref();
        self.operators_by_fingerprint
            .get(&peer.sha256)
            .or_else(|| dn.and_then(|dn| self.operators_by_subject.get(dn)))
            .cloned()
    }
}
