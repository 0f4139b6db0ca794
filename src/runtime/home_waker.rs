//! Keeps glommio's task wakers on their own thread.
//!
//! A glommio waker woken or dropped on another thread goes through glommio's "foreign" path,
//! whose reference counting races with the task's own thread: under load a task is freed
//! twice (seen as "double free detected in tcache 2" in `Waker::wake` called from
//! `process_foreign_wakes`). Cross-shard replies are exactly that: shard B completes a
//! oneshot whose receiver, and waker, belong to a task of shard A.
//!
//! So every task of ours runs inside [`HomeWoken`], which polls it with a waker of its own:
//! a thread-safe `Arc` that holds the task's glommio waker. Another thread that wakes it only
//! calls `wake_by_ref` on the glommio waker while the home thread still holds that waker, so
//! the foreign thread never takes a glommio reference count to zero; the glommio waker is
//! replaced and dropped only on the home thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

/// The glommio waker of a task, reachable from any thread.
struct HomeWaker(Mutex<Option<Waker>>);

impl HomeWaker {
    fn slot(&self) -> MutexGuard<'_, Option<Waker>> {
        // Nothing panics while holding the lock, but a poisoned slot is still a valid slot.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Wake for HomeWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(waker) = self.slot().as_ref() {
            waker.wake_by_ref();
        }
    }
}

/// A future polled with a [`HomeWaker`] instead of the executor's waker.
pub struct HomeWoken<F> {
    inner: Pin<Box<F>>,
    home: Arc<HomeWaker>,
    waker: Waker,
}

impl<F: Future> HomeWoken<F> {
    pub fn new(fut: F) -> Self {
        let home = Arc::new(HomeWaker(Mutex::new(None)));
        Self {
            inner: Box::pin(fut),
            waker: Waker::from(home.clone()),
            home,
        }
    }
}

impl<F: Future> Future for HomeWoken<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let replaced = {
            let mut slot = this.home.slot();
            match slot.as_ref() {
                Some(current) if current.will_wake(cx.waker()) => None,
                _ => slot.replace(cx.waker().clone()),
            }
        };
        drop(replaced);
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

impl<F> Drop for HomeWoken<F> {
    fn drop(&mut self) {
        // The task is ending on its own thread: its glommio waker is dropped here, whoever
        // still holds the `Arc`.
        let waker = self.home.slot().take();
        drop(waker);
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::{block_on, spawn};

    /// A task woken from another thread, many times over: every wake-up is delivered and the
    /// task completes (the glommio waker is only ever dropped on its own thread).
    #[test]
    fn tasks_woken_from_another_thread_complete() {
        block_on(async {
            for _ in 0..200 {
                let (tx, rx) = futures::channel::oneshot::channel::<u32>();
                let task = spawn(async move { rx.await.expect("a reply") });
                let sender = std::thread::spawn(move || tx.send(7).expect("receiver alive"));
                assert_eq!(task.await, 7);
                sender.join().expect("sender thread");
            }
        });
    }
}
