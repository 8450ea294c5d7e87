//! Per-worker mailbox: messages that arrived, receives that are waiting, and
//! the MPI matching rules between them.
//!
//! A receive is matched at the moment it is *posted* (not when it is waited
//! on), so two receives for the same source and tag get messages in the order
//! they were posted, and messages from one source with one tag are never
//! overtaken by each other.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::task::AtomicWaker;

use crate::error::{Error, Result};
use crate::wire::Space;

/// A message's matching key: its tag space and tag.
pub(crate) type Key = (Space, u64);

/// Which sources a receive accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Rank(usize),
    Any,
}

impl Source {
    fn accepts(self, src: usize) -> bool {
        match self {
            Source::Rank(r) => r == src,
            Source::Any => true,
        }
    }
}

/// The rendezvous point of one posted receive and the message that completes it.
pub(crate) struct Slot {
    ready: AtomicBool,
    value: Mutex<Option<Result<(usize, Bytes)>>>,
    waker: AtomicWaker,
}

impl Slot {
    fn new() -> Arc<Slot> {
        Arc::new(Slot { ready: AtomicBool::new(false), value: Mutex::new(None), waker: AtomicWaker::new() })
    }

    fn completed(value: Result<(usize, Bytes)>) -> Arc<Slot> {
        let slot = Slot::new();
        slot.complete(value);
        slot
    }

    fn complete(&self, value: Result<(usize, Bytes)>) {
        *lock(&self.value) = Some(value);
        self.ready.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn take(&self) -> Option<Result<(usize, Bytes)>> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.value).take()
    }
}

#[derive(Default)]
struct State {
    unexpected: HashMap<Key, VecDeque<(usize, Bytes)>>,
    posted: HashMap<Key, VecDeque<(Source, Arc<Slot>)>>,
    failure: Option<Error>,
}

/// The mailbox of one worker.
#[derive(Default)]
pub(crate) struct Mailbox {
    state: Mutex<State>,
}

impl Mailbox {
    /// Hands a message to the first waiting receive that accepts it, or keeps it.
    pub fn deliver(&self, key: Key, src: usize, payload: Bytes) {
        let mut state = lock(&self.state);
        if let Some(waiting) = state.posted.get_mut(&key)
            && let Some(i) = waiting.iter().position(|(from, _)| from.accepts(src))
        {
            let (_, slot) = waiting.remove(i).expect("index from position");
            if waiting.is_empty() {
                state.posted.remove(&key);
            }
            drop(state);
            slot.complete(Ok((src, payload)));
            return;
        }
        state.unexpected.entry(key).or_default().push_back((src, payload));
    }

    /// Posts a receive. `closed(src)` says whether a source can still send.
    pub fn post(self: &Arc<Self>, key: Key, from: Source, closed: impl Fn(usize) -> bool) -> Recv {
        let mut state = lock(&self.state);
        if let Some(queue) = state.unexpected.get_mut(&key)
            && let Some(i) = queue.iter().position(|(src, _)| from.accepts(*src))
        {
            let message = queue.remove(i).expect("index from position");
            if queue.is_empty() {
                state.unexpected.remove(&key);
            }
            return Recv::done(Ok(message));
        }
        if let Some(err) = &state.failure {
            return Recv::done(Err(err.clone()));
        }
        if let Source::Rank(src) = from
            && closed(src)
        {
            return Recv::done(Err(Error::PeerClosed { rank: src, tag: key.1 }));
        }
        let slot = Slot::new();
        state.posted.entry(key).or_default().push_back((from, slot.clone()));
        Recv { slot, owner: Some((self.clone(), key)) }
    }

    /// Fails every waiting receive and every later one that finds no message.
    pub fn fail(&self, err: &Error) {
        let mut state = lock(&self.state);
        if state.failure.is_none() {
            state.failure = Some(err.clone());
        }
        let posted = std::mem::take(&mut state.posted);
        drop(state);
        for (_, slot) in posted.into_values().flatten() {
            slot.complete(Err(err.clone()));
        }
    }

    /// Fails the waiting receives that name a source which will send no more.
    pub fn sources_closed(&self, closed: impl Fn(usize) -> bool) {
        let mut state = lock(&self.state);
        let mut failed = Vec::new();
        for (key, waiting) in state.posted.iter_mut() {
            waiting.retain(|(from, slot)| match from {
                Source::Rank(src) if closed(*src) => {
                    failed.push((Error::PeerClosed { rank: *src, tag: key.1 }, slot.clone()));
                    false
                }
                _ => true,
            });
        }
        state.posted.retain(|_, waiting| !waiting.is_empty());
        drop(state);
        for (err, slot) in failed {
            slot.complete(Err(err));
        }
    }

    /// Withdraws a receive that was dropped before it completed. If a message
    /// reached it meanwhile, the message goes back to the front of the queue.
    fn cancel(&self, key: Key, slot: &Arc<Slot>) {
        let mut state = lock(&self.state);
        if let Some(waiting) = state.posted.get_mut(&key) {
            waiting.retain(|(_, s)| !Arc::ptr_eq(s, slot));
            if waiting.is_empty() {
                state.posted.remove(&key);
            }
        }
        if let Some(Ok(message)) = slot.take() {
            state.unexpected.entry(key).or_default().push_front(message);
        }
    }

    /// Messages that arrived and were never received (for leak checks in tests).
    #[cfg(test)]
    pub fn unexpected_len(&self) -> usize {
        lock(&self.state).unexpected.values().map(VecDeque::len).sum()
    }
}

/// A posted receive; a future that yields `(source rank, payload)`.
pub(crate) struct Recv {
    slot: Arc<Slot>,
    /// Set while the receive is posted in a mailbox (so dropping it withdraws it).
    owner: Option<(Arc<Mailbox>, Key)>,
}

impl Recv {
    fn done(value: Result<(usize, Bytes)>) -> Recv {
        Recv { slot: Slot::completed(value), owner: None }
    }

    /// Takes the result if it is there, without waiting.
    pub fn try_take(&mut self) -> Option<Result<(usize, Bytes)>> {
        let value = self.slot.take()?;
        self.owner = None;
        Some(value)
    }
}

impl Future for Recv {
    type Output = Result<(usize, Bytes)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(v) = self.try_take() {
            return Poll::Ready(v);
        }
        self.slot.waker.register(cx.waker());
        // A completion between the first check and the registration would be lost without this second look.
        match self.try_take() {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }
}

impl Drop for Recv {
    fn drop(&mut self) {
        if let Some((mailbox, key)) = self.owner.take() {
            mailbox.cancel(key, &self.slot);
        }
    }
}

/// Locks a mutex, ignoring poisoning: a worker that panicked while holding it
/// leaves the protected data consistent (every critical section here is panic-free).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    const K: Key = (Space::User, 1);

    fn never_closed(_: usize) -> bool {
        false
    }

    #[test]
    fn receives_are_matched_in_post_order() {
        let mb = Arc::new(Mailbox::default());
        let mut first = mb.post(K, Source::Any, never_closed);
        let mut second = mb.post(K, Source::Rank(3), never_closed);
        mb.deliver(K, 3, Bytes::from_static(b"a"));
        mb.deliver(K, 3, Bytes::from_static(b"b"));
        assert_eq!(second.try_take().unwrap().unwrap().1, "b");
        assert_eq!(first.try_take().unwrap().unwrap().1, "a");
    }

    #[test]
    fn messages_from_one_source_keep_their_order() {
        let mb = Arc::new(Mailbox::default());
        for i in 0..5u8 {
            mb.deliver(K, 1, Bytes::from(vec![i]));
            mb.deliver(K, 2, Bytes::from(vec![100 + i]));
        }
        for i in 0..5u8 {
            let (_, got) = mb.post(K, Source::Rank(1), never_closed).now_or_never().unwrap().unwrap();
            assert_eq!(got[0], i);
        }
        assert_eq!(mb.unexpected_len(), 5);
    }

    #[test]
    fn a_dropped_receive_gives_its_message_back() {
        let mb = Arc::new(Mailbox::default());
        let pending = mb.post(K, Source::Rank(0), never_closed);
        mb.deliver(K, 0, Bytes::from_static(b"x"));
        drop(pending);
        let (_, got) = mb.post(K, Source::Rank(0), never_closed).now_or_never().unwrap().unwrap();
        assert_eq!(got, "x");
    }

    #[test]
    fn failure_reaches_waiting_and_later_receives() {
        let mb = Arc::new(Mailbox::default());
        let mut waiting = mb.post(K, Source::Rank(0), never_closed);
        mb.fail(&Error::PeerFailed { rank: 4, reason: "boom".into() });
        assert!(matches!(waiting.try_take(), Some(Err(Error::PeerFailed { rank: 4, .. }))));
        let later = mb.post(K, Source::Any, never_closed).now_or_never().unwrap();
        assert!(later.is_err());
    }

    #[test]
    fn closed_sources_fail_only_receives_that_name_them() {
        let mb = Arc::new(Mailbox::default());
        let mut from_closed = mb.post(K, Source::Rank(7), never_closed);
        let mut from_open = mb.post(K, Source::Rank(1), never_closed);
        mb.sources_closed(|r| r == 7);
        assert!(matches!(from_closed.try_take(), Some(Err(Error::PeerClosed { rank: 7, tag: 1 }))));
        assert!(from_open.try_take().is_none());
    }
}
