//! A registered portal (Onlinedienst): who may submit for which Leistungen and
//! destinations.

use crate::model::routing::PatternSet;

/// A registered portal.
#[derive(Debug)]
pub struct Portal {
    pub id: String,
    pub leistungen: PatternSet,
    pub destinations: PatternSet,
}
