//! The global memory budget for request bodies: every byte a request body brings
//! into memory is counted against one budget shared by all connections, before
//! it is kept; a request that would exceed it is refused with `503` and
//! `Retry-After` instead of growing the process (40 slow uploads of 62 MiB must
//! not take 2.7 GB). What a request counted is given back when it is answered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::body::BodyStream;

/// Why a counted body stream ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("reading the body failed: {0}")]
    Read(#[from] hyper::Error),
    #[error("the gateway's memory budget for request bodies is used up")]
    Budget,
}

/// The bytes one request holds of the budget, given back when it is dropped.
#[derive(Default)]
pub(crate) struct Held {
    permits: Mutex<Option<OwnedSemaphorePermit>>,
    /// The budget ran out while this request was being read.
    exhausted: AtomicBool,
}

impl Held {
    pub(crate) fn exhausted(&self) -> bool {
        self.exhausted.load(Ordering::Relaxed)
    }

    /// Gives `n` bytes back to the budget: they were sealed and written out
    /// while the request goes on (a large attachment, see `core::intake::stream`).
    pub(crate) fn release(&self, n: usize) {
        if let Ok(mut permits) = self.permits.lock() {
            if let Some(all) = permits.as_mut() {
                let n = n.min(all.num_permits());
                drop(all.split(n));
            }
        }
    }
}

/// Wraps a request body so every chunk is counted against `budget` before the
/// reader gets it; a chunk that does not fit ends the stream with
/// [`BodyError::Budget`] and marks `held` as exhausted.
pub(crate) fn counted(
    body: BodyStream,
    budget: Arc<Semaphore>,
    held: Arc<Held>,
) -> BoxStream<'static, Result<Bytes, BodyError>> {
    Box::pin(body.map(move |chunk| {
        let chunk = chunk?;
        let n = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        match budget.clone().try_acquire_many_owned(n) {
            Ok(p) => {
                if let Ok(mut permits) = held.permits.lock() {
                    match permits.as_mut() {
                        Some(all) => all.merge(p),
                        None => *permits = Some(p),
                    }
                }
                Ok(chunk)
            }
            Err(_) => {
                held.exhausted.store(true, Ordering::Relaxed);
                Err(BodyError::Budget)
            }
        }
    }))
}

/// Why a whole body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadAllError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("the body exceeds {0} bytes")]
    TooLarge(u64),
}

/// Reads a whole body of at most `max` bytes, counted against `budget`; the
/// bytes stay counted while the returned `Held` lives.
pub(crate) async fn read_all(
    body: BodyStream,
    budget: Arc<Semaphore>,
    max: u64,
) -> Result<(Vec<u8>, Arc<Held>), ReadAllError> {
    let held = Arc::new(Held::default());
    let mut stream = counted(body, budget, held.clone());
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (out.len() + chunk.len()) as u64 > max {
            return Err(ReadAllError::TooLarge(max));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_are_counted_while_held_and_given_back_when_dropped() {
        let budget = Arc::new(Semaphore::new(10));
        let chunks = |n: usize| -> BodyStream {
            Box::pin(futures_util::stream::iter(
                (0..n).map(|_| Ok(Bytes::from_static(b"1234"))),
            ))
        };
        let held = Arc::new(Held::default());
        let got: Vec<_> = counted(chunks(2), budget.clone(), held.clone())
            .collect()
            .await;
        assert!(got.iter().all(|c| c.is_ok()));
        assert_eq!(budget.available_permits(), 2, "8 bytes held");
        let other = Arc::new(Held::default());
        let got: Vec<_> = counted(chunks(1), budget.clone(), other.clone())
            .collect()
            .await;
        assert!(matches!(got[0], Err(BodyError::Budget)));
        assert!(other.exhausted() && !held.exhausted());
        drop(held);
        assert_eq!(budget.available_permits(), 10, "given back");
    }
}
