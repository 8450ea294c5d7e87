//! Blocking on the middleware's futures from plain worker threads.
//!
//! A parked thread woken from an idle core pays tens of microseconds on these
//! machines, more than a whole in-pack hand-off. So a waiting worker first
//! polls for a short, configurable time (as MPI does) and only then parks.
//!
//! Spinning only pays while spinners leave a core to the thread they wait for:
//! with 16 workers on 2 cores, 16 spinners would push the one worker that has
//! work to do behind a whole scheduler time slice (~4 ms here). So at most
//! one thread per core spins at a time (yielding between polls); the others
//! park at once.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// Wakes a worker thread: marks it woken (what a spinning thread watches) and
/// unparks it (for a parked one).
struct ThreadWaker {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

thread_local! {
    static STATE: Arc<ThreadWaker> = Arc::new(ThreadWaker { thread: thread::current(), woken: AtomicBool::new(false) });
    static WAKER: Waker = STATE.with(|s| Waker::from(s.clone()));
}

/// Threads of this process spinning right now.
static SPINNERS: AtomicUsize = AtomicUsize::new(0);

fn max_spinners() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A permission to spin, returned on drop.
struct SpinSlot;

impl SpinSlot {
    fn try_take() -> Option<SpinSlot> {
        let taken = SPINNERS.fetch_add(1, Ordering::AcqRel);
        if taken < max_spinners() {
            Some(SpinSlot)
        } else {
            SPINNERS.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }
}

impl Drop for SpinSlot {
    fn drop(&mut self) {
        SPINNERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Drives `fut` to completion on this thread: busy-polls for up to `spin`
/// (if a spin slot is free), calling `progress` between polls, then parks
/// until woken. Timeouts belong inside `fut`.
pub(crate) fn block_on<F: Future>(fut: F, spin: Duration, progress: impl Fn()) -> F::Output {
    let mut fut = pin!(fut);
    STATE.with(|state| {
        WAKER.with(|waker| {
            let mut cx = Context::from_waker(waker);
            state.woken.store(false, Ordering::Relaxed);
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            if !spin.is_zero()
                && let Some(_slot) = SpinSlot::try_take()
            {
                // Between polls, pause and yield the core (a thread with work, the
                // sender or an I/O thread, may need it), but watch the wake-up mark,
                // a plain atomic, and poll at once when it is set: the hand-off then
                // costs a few pauses, not a whole round and a yield.
                let start = Instant::now();
                while start.elapsed() < spin {
                    let mut woken = false;
                    for _ in 0..32 {
                        std::hint::spin_loop();
                        if state.woken.load(Ordering::Relaxed) {
                            woken = true;
                            break;
                        }
                    }
                    if !woken {
                        // Read what the links have brought (it may be what we wait
                        // for: then the mark is set), and yield if it was not.
                        progress();
                        if !state.woken.load(Ordering::Relaxed) {
                            thread::yield_now();
                        }
                    }
                    state.woken.store(false, Ordering::Relaxed);
                    if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                        return v;
                    }
                }
            }
            loop {
                if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                    return v;
                }
                thread::park();
            }
        })
    })
}
