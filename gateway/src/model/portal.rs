//! A registered portal (Onlinedienst): who may submit for which Leistungen and
//! destinations.

use crate::model::routing::PatternSet;

/// A registered portal.
#[derive(Debug)]
pub struct Portal {
    pub id: String,
    pub leistungen: PatternSet,
    pub destinations: PatternSet,
    /// Its XTA account when it sends over XTA.
    pub xta_account: String,
    /// Submissions a second it may send (instead of `[ingest.limits] portal_rate`).
    pub rate: Option<f64>,
    /// Submissions it may have in progress at once (instead of `portal_uploads`).
    pub uploads: Option<usize>,
}

/// A reader of message boxes (a Fachverfahren or DMS fetching over XTA): its
/// account and the targets whose boxes it reads.
#[derive(Debug)]
pub struct Reader {
    pub account: String,
    pub targets: Vec<String>,
}
