//! A delivery — one (submission, target) — and what happens to it: its states,
//! an attempt's recorded outcome, operators' actions, queue depths.

use serde::Serialize;

/// Why an attempt did not deliver: a stable class (e.g. `http-503`,
/// `envelope-damaged`) and a short message without content, as adapters report it.
pub use ozg_adapter_sdk::Failure;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    InFlight,
    Delivered,
    RetryWait,
    Parked,
    Discarded,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Delivered => "delivered",
            DeliveryState::RetryWait => "retry_wait",
            DeliveryState::Parked => "parked",
            DeliveryState::Discarded => "discarded",
        }
    }

    /// Waiting for an attempt that has a due time (`pending`, `retry_wait`).
    pub fn waits(self) -> bool {
        matches!(self, DeliveryState::Pending | DeliveryState::RetryWait)
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeliveryState::Pending,
            "in_flight" => DeliveryState::InFlight,
            "delivered" => DeliveryState::Delivered,
            "retry_wait" => DeliveryState::RetryWait,
            "parked" => DeliveryState::Parked,
            "discarded" => DeliveryState::Discarded,
            _ => return None,
        })
    }
}

/// A delivery taken by the engine for one attempt (state `in_flight`).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub message_id: String,
    pub submission_id: String,
    pub target: String,
    /// Attempts including this one.
    pub attempts: u32,
    /// When the submission was accepted (ms since the epoch).
    pub created_at_ms: i64,
    /// Bytes of its envelope (0 where the store does not say).
    pub size: u64,
    /// Where the store keeps its envelope, where the claim can say (the
    /// embedded store's segment files): read without asking the database again.
    pub stored_at: Option<StoredAt>,
}

/// Where an envelope lies in the embedded store's segment files, as its
/// delivery row records it. It does not move while the delivery is claimed:
/// segments are never rewritten, and a file goes only once no row names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAt {
    pub segment: i64,
    pub offset: i64,
    /// Bytes stored there: the envelope, or its recipe.
    pub len: i64,
    /// CRC-32 of the stored bytes.
    pub crc32: u32,
}

/// The result of an attempt, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Delivered {
        receipt: Option<String>,
    },
    /// In the gateway's message box (an `xta` target): stays `in_flight` until
    /// its reader fetches and closes it, which records `Delivered`.
    Offered,
    /// A `delivered` delivery's receipt, sent by the target afterwards (an
    /// xdomea `EmpfangBestaetigen.0202` over XTA).
    Confirmed {
        receipt: String,
    },
    /// Wait until `at_ms`, then try again.
    RetryAt {
        at_ms: i64,
        failure: Failure,
    },
    /// Dead-lettered: waits for an operator. `gave_up_after`: the retry policy
    /// ran out after this many attempts (the failure is the last one's).
    Parked {
        failure: Failure,
        gave_up_after: Option<u32>,
    },
}

impl Recorded {
    /// The error's class, for the audit record and metrics (never its message:
    /// messages may name hosts or paths).
    pub fn class(&self) -> Option<&str> {
        match self {
            Recorded::Delivered { .. } | Recorded::Offered | Recorded::Confirmed { .. } => None,
            Recorded::RetryAt { failure, .. } | Recorded::Parked { failure, .. } => {
                Some(&failure.class)
            }
        }
    }

    /// The last error for a log line: without what the receiver said (its text
    /// may carry anything).
    pub fn loggable_error(&self) -> Option<String> {
        match self {
            Recorded::Delivered { .. } | Recorded::Offered | Recorded::Confirmed { .. } => None,
            Recorded::RetryAt { failure, .. } | Recorded::Parked { failure, .. } => {
                Some(failure.loggable())
            }
        }
    }

    /// The last error as operators and the status show it.
    pub fn last_error(&self) -> Option<String> {
        match self {
            Recorded::Delivered { .. } | Recorded::Offered | Recorded::Confirmed { .. } => None,
            Recorded::RetryAt { failure, .. } => Some(failure.to_string()),
            Recorded::Parked {
                failure,
                gave_up_after: Some(n),
            } => Some(format!("gave up after {n} attempt(s): {failure}")),
            Recorded::Parked { failure, .. } => Some(failure.to_string()),
        }
    }
}

/// What an operator does with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Parked or waiting → pending, due now.
    Retry,
    /// Parked or waiting → discarded; the sealed envelope is deleted.
    Discard,
    /// Waiting → parked: kept, not attempted until an operator retries it.
    Park,
}

impl Action {
    /// Whether the action applies to a delivery in `state` (`offered`: it
    /// waits in a message box). A message in a box may be taken out of it
    /// (discarded), not retried.
    pub fn applies_to(self, state: DeliveryState, offered: bool) -> bool {
        let boxed = state == DeliveryState::InFlight && offered;
        match self {
            Action::Park => state.waits(),
            Action::Retry => matches!(state, DeliveryState::Parked | DeliveryState::RetryWait),
            Action::Discard => {
                matches!(state, DeliveryState::Parked | DeliveryState::RetryWait)
                    || state == DeliveryState::Pending
                    || boxed
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Discard => "discard",
            Action::Park => "park",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "retry" => Action::Retry,
            "discard" => Action::Discard,
            "park" => Action::Park,
            _ => return None,
        })
    }
}

/// Who acts: an operator's id and the tenant of what they act on (`None`:
/// it belongs to no tenant). Both go into the audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub tenant: Option<String>,
}

impl Actor {
    pub fn new(id: impl Into<String>, tenant: Option<&str>) -> Self {
        Actor {
            id: id.into(),
            tenant: tenant.map(str::to_owned),
        }
    }
}

/// Which deliveries an operator lists: every filter is optional; pages follow
/// the message id (ids sort by creation time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryQuery {
    pub state: Option<DeliveryState>,
    /// Only these targets (`None`: every target; an empty list: none).
    pub targets: Option<Vec<String>>,
    pub leistung: Option<String>,
    /// Only deliveries of submissions accepted before this (ms).
    pub created_before_ms: Option<i64>,
    /// Only deliveries after this message id (the previous page's last).
    pub after: Option<String>,
    /// Most rows returned.
    pub limit: usize,
}

/// The result of an operator action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operated {
    Done {
        target: String,
        state: DeliveryState,
    },
    NotFound,
    /// The delivery is in a state the action does not apply to.
    WrongState(DeliveryState),
}

/// One delivery as an operator lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    pub message_id: String,
    pub submission_id: String,
    pub target: String,
    pub state: DeliveryState,
    /// The submission's Leistung.
    pub leistung: String,
    /// When the submission was accepted (RFC 3339).
    pub created_at: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub updated_at: String,
    /// When it is due (RFC 3339) while it waits (`pending`, `retry_wait`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// Since when it waits in the message box for its reader (`xta` targets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_at: Option<String>,
}

/// Which messages a message box lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoxQuery {
    /// The reader's targets.
    pub targets: Vec<String>,
    /// Only messages after this message id (ids sort by time: paging).
    pub after: Option<String>,
    /// Only these message ids (when given).
    pub ids: Vec<String>,
    /// Only messages put in the box at or after / before this time (ms).
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Most messages returned.
    pub limit: usize,
}

/// A message waiting in the message box of an `xta` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boxed {
    pub message_id: String,
    pub submission_id: String,
    pub target: String,
    /// When it was put in the box (ms since the epoch).
    pub offered_ms: i64,
    /// The sealed envelope's size in bytes.
    pub size: u64,
    /// The submission's Leistung (the XTA service).
    pub leistung: String,
    /// The portal that sent it (the XTA author).
    pub portal: String,
    /// When the submission was accepted (RFC 3339).
    pub received_at: String,
    /// On a reply (in a portal's reply box): the submission it answers.
    pub in_reply_to: Option<String>,
}

/// One delivery as the message box looks it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryInfo {
    pub message_id: String,
    pub submission_id: String,
    pub target: String,
    pub state: DeliveryState,
    /// Set while (or since) it waits in a message box.
    pub offered_ms: Option<i64>,
}

/// A target's newest error, as operators see it (its oldest waiting
/// delivery comes from `Store::oldest_waiting`, by index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetHealth {
    pub target: String,
    /// The newest error of a delivery that waits for a retry or is parked.
    pub last_error: Option<String>,
    /// When that delivery last changed (ms).
    pub last_error_ms: Option<i64>,
}

/// The targets with deliveries waiting (`pending`, `retry_wait`), each once.
pub fn waiting_targets(depths: &[QueueDepth]) -> Vec<String> {
    let mut targets: Vec<String> = depths
        .iter()
        .filter(|d| d.state.waits() && d.count > 0)
        .map(|d| d.target.clone())
        .collect();
    targets.sort();
    targets.dedup();
    targets
}

/// Number of deliveries per target and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub target: String,
    pub state: DeliveryState,
    pub count: u64,
}
