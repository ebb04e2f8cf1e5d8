//! The proxy's own statement timer. A session can lift the server's `statement_timeout` (`SET`,
//! `SET LOCAL`, `ALTER ROLE … SET`), so the workspace's `query_timeout_ms` is kept here too:
//! a unit of work (a simple query, an Execute, a Sync, a function call) that the server has not
//! finished `query_timeout_ms` plus [`MARGIN`] after it reached the front of the session's queue
//! is cancelled, and if it is still there [`ESCALATION`] later the relay gives up on the server
//! connection.
//!
//! The relay's hot path pays nothing per message. The watchdog is polled only when the relay's
//! task wakes anyway; it reads the clock once when a different unit has reached the front, and
//! moves its one timer only when the timer fires before the unit at the front is due (or when it
//! had nothing to watch), so a stream of short statements registers one timer per timeout
//! period, not one per statement.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// How much longer than `query_timeout_ms` the proxy waits, so that when the session left the
/// server's own `statement_timeout` in force, that fires first and the client sees the
/// server's usual error.
pub const MARGIN: Duration = Duration::from_millis(500);
/// How long a cancelled unit may take to finish before the relay gives up on the connection.
pub const ESCALATION: Duration = Duration::from_secs(5);

/// What came due for the unit at the front of the queue (its sequence number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// It ran past the timeout: cancel it.
    Overran(u64),
    /// It was cancelled [`ESCALATION`] ago and has not finished.
    Ignored(u64),
}

/// The unit being watched.
#[derive(Clone, Copy)]
struct Watched {
    seq: u64,
    due: Instant,
    cancelled: bool,
}

pub struct Watchdog {
    limit: Duration,
    watched: Option<Watched>,
}

impl Watchdog {
    /// A watchdog for `query_timeout` (which the margin is added to).
    pub fn new(query_timeout: Duration) -> Self {
        Self {
            limit: query_timeout + MARGIN,
            watched: None,
        }
    }

    /// A timer for [`poll`](Self::poll) to drive: created unarmed (far in the future).
    pub fn timer() -> Sleep {
        tokio::time::sleep_until(Instant::now() + Duration::from_secs(86_400 * 365))
    }

    /// Ready when the unit at the front of the queue (`front`, its sequence number) came due.
    /// Registers `timer` for the due time otherwise, so the task wakes then.
    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
        mut timer: Pin<&mut Sleep>,
        front: Option<u64>,
    ) -> Poll<Expired> {
        let Some(seq) = front else {
            // Nothing to watch. The timer may still fire once; it is not polled until there is.
            self.watched = None;
            return Poll::Pending;
        };
        let watched = match self.watched {
            Some(w) if w.seq == seq => w,
            _ => {
                let w = Watched {
                    seq,
                    due: Instant::now() + self.limit,
                    cancelled: false,
                };
                self.watched = Some(w);
                w
            }
        };
        loop {
            if timer.deadline() > watched.due {
                timer.as_mut().reset(watched.due);
            }
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() >= watched.due => {
                    return Poll::Ready(if watched.cancelled {
                        Expired::Ignored(seq)
                    } else {
                        Expired::Overran(seq)
                    });
                }
                // The timer was set for an earlier unit: move it to this one's due time.
                Poll::Ready(()) => timer.as_mut().reset(watched.due),
            }
        }
    }

    /// The unit that overran was cancelled: it now has [`ESCALATION`] to finish.
    pub fn cancelled(&mut self) {
        if let Some(w) = &mut self.watched {
            w.cancelled = true;
            w.due = Instant::now() + ESCALATION;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls the watchdog until it fires, with `front` at the front, advancing paused time.
    async fn expire(dog: &mut Watchdog, timer: &mut Pin<&mut Sleep>, front: u64) -> Expired {
        std::future::poll_fn(|cx| dog.poll(cx, timer.as_mut(), Some(front))).await
    }

    fn pending(dog: &mut Watchdog, timer: &mut Pin<&mut Sleep>, front: Option<u64>) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        dog.poll(&mut cx, timer.as_mut(), front).is_pending()
    }

    #[tokio::test(start_paused = true)]
    async fn a_unit_is_cancelled_after_the_timeout_then_given_up_on() {
        let mut dog = Watchdog::new(Duration::from_secs(1));
        let timer = Watchdog::timer();
        tokio::pin!(timer);
        let started = Instant::now();
        assert_eq!(expire(&mut dog, &mut timer, 7).await, Expired::Overran(7));
        assert_eq!(started.elapsed(), Duration::from_secs(1) + MARGIN);
        dog.cancelled();
        assert_eq!(expire(&mut dog, &mut timer, 7).await, Expired::Ignored(7));
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1) + MARGIN + ESCALATION
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_unit_gets_the_whole_timeout_from_when_it_reaches_the_front() {
        let mut dog = Watchdog::new(Duration::from_secs(1));
        let timer = Watchdog::timer();
        tokio::pin!(timer);
        assert!(pending(&mut dog, &mut timer, Some(1)));
        tokio::time::advance(Duration::from_millis(1200)).await;
        // Unit 1 finished just in time; unit 2 starts its own clock now.
        let second = Instant::now();
        assert!(pending(&mut dog, &mut timer, Some(2)));
        assert_eq!(expire(&mut dog, &mut timer, 2).await, Expired::Overran(2));
        assert_eq!(second.elapsed(), Duration::from_secs(1) + MARGIN);
        // Nothing pending: nothing fires, however long the session idles.
        assert!(pending(&mut dog, &mut timer, None));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(pending(&mut dog, &mut timer, None));
        // A cancelled unit that finished does not leave its escalation to the next one.
        dog.cancelled();
        let third = Instant::now();
        assert_eq!(expire(&mut dog, &mut timer, 3).await, Expired::Overran(3));
        assert_eq!(third.elapsed(), Duration::from_secs(1) + MARGIN);
    }
}
