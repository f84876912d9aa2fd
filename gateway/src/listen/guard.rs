//! What keeps one client from holding the listener: caps on connections per
//! client address (counted from accept, so sockets that never finish their TLS
//! handshake count too) and per registered portal or operator, and a write timeout on every connection (a client that
//! sends requests but never reads the answers does not keep it open forever).

use std::collections::HashMap;
use std::hash::Hash;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Open connections per key: a client address, or a registered client's id.
#[derive(Debug)]
pub struct PerKey<K: Hash + Eq + Clone> {
    open: Mutex<HashMap<K, usize>>,
}

/// Open connections per client address.
pub type PerAddress = PerKey<IpAddr>;

impl<K: Hash + Eq + Clone> Default for PerKey<K> {
    fn default() -> Self {
        PerKey {
            open: Mutex::default(),
        }
    }
}

/// One counted connection; counted down when dropped.
pub struct Counted<K: Hash + Eq + Clone> {
    table: Arc<PerKey<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> PerKey<K> {
    /// Counts a new connection of `key`, unless it already has `max` open.
    pub fn admit(table: &Arc<PerKey<K>>, key: K, max: usize) -> Option<Counted<K>> {
        let mut open = table.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key.clone()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Counted {
            table: table.clone(),
            key,
        })
    }
}

impl<K: Hash + Eq + Clone> Drop for Counted<K> {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// A stream whose writes fail with `TimedOut` when they make no progress for
/// `limit` (the peer stopped reading).
pub struct WriteTimeout<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteTimeout<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        WriteTimeout {
            inner,
            limit,
            stalled: None,
        }
    }

    /// A write or flush of the inner stream, with the time limit applied: progress
    /// resets it, `Pending` for longer than `limit` becomes `TimedOut`.
    fn timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => match self.check(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    /// After a write returned `Pending`: the time is up once `limit` passed
    /// without progress.
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the answer in time",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future as _;

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.timed(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.timed(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_max_and_its_slots_come_back() {
        let table = Arc::new(PerAddress::default());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let held: Vec<_> = (0..3)
            .map(|_| PerAddress::admit(&table, a, 3).unwrap())
            .collect();
        assert!(PerAddress::admit(&table, a, 3).is_none());
        assert!(
            PerAddress::admit(&table, b, 3).is_some(),
            "others unaffected"
        );
        drop(held);
        assert!(PerAddress::admit(&table, a, 3).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_reads_fails_after_the_limit() {
        use tokio::io::AsyncWriteExt as _;
        // A pipe whose reader never reads: writes block once its buffer is full.
        let (client, _server) = tokio::io::duplex(1024);
        let mut w = WriteTimeout::new(client, Duration::from_secs(30));
        let err = w.write_all(&[0u8; 64 << 10]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
