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
}

/// A reader of message boxes (a Fachverfahren or DMS fetching over XTA): its
/// account and the targets whose boxes it reads.
#[derive(Debug)]
pub struct Reader {
    pub account: String,
    pub targets: Vec<String>,
}
