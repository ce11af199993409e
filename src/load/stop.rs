//! The run's stop as one generator thread's streams wait for it. Every open stream waits for
//! it for its whole life, so what it waits with is kept in every open stream's state: a
//! `CancellationToken::cancelled()` future is 72 bytes there (an intrusive list node and a
//! waker); this is 16, and a waker in the thread's list.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use slab::Slab;
use tokio_util::sync::CancellationToken;

use super::timing::Clock;

/// What one generator thread's workers share: the run's clock, and its stop.
pub(super) struct ThreadShared {
    pub(super) clock: Clock,
    pub(super) stop: StopSignal,
}

impl ThreadShared {
    /// Wakes every stream of the thread waiting for the run's stop when it comes: one task
    /// per generator thread, on the thread's `LocalSet` with its streams.
    pub(super) async fn wake_streams_on_stop(self: std::rc::Rc<Self>) {
        self.stop.wake_all_on_stop().await;
    }
}

/// The run's stop token, and the wakers of the thread's streams waiting for it.
pub(super) struct StopSignal {
    token: CancellationToken,
    waiting: RefCell<Slab<Waker>>,
}

impl StopSignal {
    pub(super) fn new(token: CancellationToken) -> Self {
        Self {
            token,
            waiting: RefCell::new(Slab::new()),
        }
    }

    /// Wakes every waiting stream when the run stops.
    async fn wake_all_on_stop(&self) {
        self.token.cancelled().await;
        for (_, waker) in self.waiting.borrow().iter() {
            waker.wake_by_ref();
        }
    }

    /// Ready once the run stops.
    pub(super) fn wait(&self) -> StopWait<'_> {
        StopWait {
            signal: self,
            key: NOT_WAITING,
        }
    }
}

/// `key` of a wait not in the list.
const NOT_WAITING: usize = usize::MAX;

/// A stream waiting for the run's stop (`StopSignal::wait`).
pub(super) struct StopWait<'a> {
    signal: &'a StopSignal,
    /// Its waker's place in the thread's list, or `NOT_WAITING`.
    key: usize,
}

impl Future for StopWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Checked before waiting, and again at every wake: a stop that came before the
        // wake-all task ran is not missed (the token says it at once).
        if self.signal.token.is_cancelled() {
            return Poll::Ready(());
        }
        let mut waiting = self.signal.waiting.borrow_mut();
        match waiting.get_mut(self.key) {
            Some(waker) => waker.clone_from(cx.waker()),
            None => {
                let key = waiting.insert(cx.waker().clone());
                drop(waiting);
                self.key = key;
            }
        }
        Poll::Pending
    }
}

impl Drop for StopWait<'_> {
    fn drop(&mut self) {
        if self.key != NOT_WAITING {
            self.signal.waiting.borrow_mut().try_remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[tokio::test(flavor = "current_thread")]
    async fn every_waiting_stream_wakes_when_the_run_stops_and_leaves_the_list() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let token = CancellationToken::new();
                let signal = Rc::new(StopSignal::new(token.clone()));
                let s = signal.clone();
                tokio::task::spawn_local(async move { s.wake_all_on_stop().await });
                let mut waits = Vec::new();
                for _ in 0..3 {
                    let s = signal.clone();
                    waits.push(tokio::task::spawn_local(async move { s.wait().await }));
                }
                tokio::task::yield_now().await;
                assert_eq!(signal.waiting.borrow().len(), 3, "all three wait");
                // A wait dropped before the stop leaves the list.
                {
                    let mut early = Box::pin(signal.wait());
                    let mut cx = Context::from_waker(Waker::noop());
                    assert!(early.as_mut().poll(&mut cx).is_pending());
                    assert_eq!(signal.waiting.borrow().len(), 4);
                }
                assert_eq!(signal.waiting.borrow().len(), 3);
                token.cancel();
                for w in waits {
                    tokio::time::timeout(std::time::Duration::from_secs(5), w)
                        .await
                        .expect("woken by the stop")
                        .expect("not panicked");
                }
                assert_eq!(signal.waiting.borrow().len(), 0, "each left the list");
                // A wait that starts after the stop is ready at once.
                let mut cx = Context::from_waker(Waker::noop());
                assert!(Box::pin(signal.wait()).as_mut().poll(&mut cx).is_ready());
            })
            .await;
    }
}
