//! Blocking on the middleware's futures from plain worker threads.
//!
//! A parked thread woken from an idle core pays tens of microseconds on these
//! machines, more than a whole in-pack hand-off. So a waiting worker first
//! polls for a short, configurable time (as MPI does) and only then parks.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    static WAKER: Waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
}

/// Drives `fut` to completion on this thread: busy-polls for up to `spin`,
/// then parks until woken. Timeouts belong inside `fut`.
pub(crate) fn block_on<F: Future>(fut: F, spin: Duration) -> F::Output {
    let mut fut = pin!(fut);
    WAKER.with(|waker| {
        let mut cx = Context::from_waker(waker);
        let start = Instant::now();
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            if start.elapsed() < spin {
                for _ in 0..32 {
                    std::hint::spin_loop();
                }
                // Give the core away if another thread (maybe the sender) wants it.
                thread::yield_now();
            } else {
                thread::park();
            }
        }
    })
}
