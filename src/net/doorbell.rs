//! Wakes a core's event loop from another thread.
//!
//! Ringing is coalesced: only the first ring after the core last looked costs a wake-up (an
//! eventfd write under monoio's `sync` feature); the rest are one atomic swap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

#[derive(Default)]
pub struct Doorbell {
    waker: AtomicWaker,
    rung: AtomicBool,
}

impl Doorbell {
    /// Call after pushing a message into one of the core's channels.
    pub fn ring(&self) {
        if !self.rung.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Ready once rung since the last ready; the caller must then drain every channel.
    pub fn poll_rung(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.rung.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.rung.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}
