//! What the Redis proxy holds of one request or reply. A request is decided whole, and a reply
//! rewritten whole, so a frame is buffered until its last byte has come; Redis allows bulk
//! strings of 512 MiB. Each buffer may hold [`FREE`] bytes on its own; past that it takes from
//! the proxy's budget for large frames (`ProxyState::redis_memory`), shared by every session,
//! and gives it back once the buffer is small again. A frame that would pass the budget ends its
//! session with an error; the others go on.

use tdb_engines::budget::{Answer, MemoryBudget};

/// Bytes a buffer may hold without taking from the budget.
pub const FREE: usize = 1 << 20;

/// Gives back the allocation of an emptied buffer that grew past [`FREE`] (a large request or
/// reply went through it), so that a session or a lane does not keep it for the rest of its
/// life. One that stayed under it is kept for the next use.
pub fn settle(buf: &mut bytes::BytesMut) {
    if buf.is_empty() && buf.capacity() > FREE {
        *buf = bytes::BytesMut::new();
    }
}

/// The budget's default size: what all sessions' large frames may hold at once.
pub const BUDGET: usize = 512 << 20;

/// What a buffer takes from the budget at least, once past its free share: a buffer that grows
/// by small frames goes to the budget (a lock and a semaphore) once per step, not per frame.
const STEP: usize = 64 << 10;

/// One buffer's share of the budget.
pub struct Held {
    budget: MemoryBudget,
    /// The most the buffer may take.
    limit: usize,
    taken: Option<(Answer, usize)>,
}

/// The buffer would pass the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a frame of more than {} MiB is being buffered and the proxy's memory for large frames ({} MiB, shared by every session) cannot hold it now",
    mib(*buffered),
    mib(*total)
)]
pub struct TooLarge {
    pub buffered: usize,
    pub total: usize,
    /// The most this buffer may take ([`Held::with_limit`]; the budget's size otherwise).
    pub limit: usize,
}

pub fn mib(bytes: usize) -> usize {
    bytes / (1 << 20)
}

impl Held {
    pub fn new(budget: MemoryBudget) -> Self {
        let limit = budget.total();
        Self::with_limit(budget, limit)
    }

    /// A buffer that may take at most `limit` bytes of the budget.
    pub fn with_limit(budget: MemoryBudget, limit: usize) -> Self {
        Self {
            budget,
            limit,
            taken: None,
        }
    }

    /// Accounts for a buffer that now holds `buffered` bytes: takes what it holds past the
    /// last count from the budget, or gives everything back when it is under [`FREE`].
    pub fn track(&mut self, buffered: usize) -> Result<(), TooLarge> {
        if buffered <= FREE {
            self.taken = None;
            return Ok(());
        }
        let (total, limit) = (self.budget.total(), self.limit);
        let (answer, taken) = self
            .taken
            .get_or_insert_with(|| (self.budget.answer(limit), 0));
        if buffered > *taken {
            let need = buffered - *taken;
            let ahead = need.max(STEP);
            if ahead > need && answer.take(ahead).is_ok() {
                *taken += ahead;
            } else {
                answer.take(need).map_err(|_| TooLarge {
                    buffered,
                    total,
                    limit,
                })?;
                *taken = buffered;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emptied_buffer_gives_back_what_grew_past_the_free_share() {
        let mut large = bytes::BytesMut::with_capacity(4 * FREE);
        large.extend_from_slice(&[7; 16]);
        settle(&mut large);
        assert!(large.capacity() >= 4 * FREE, "still holding bytes: kept");
        large.clear();
        settle(&mut large);
        assert_eq!(large.capacity(), 0);
        let mut small = bytes::BytesMut::with_capacity(16 * 1024);
        settle(&mut small);
        assert_eq!(
            small.capacity(),
            16 * 1024,
            "under the free share: kept for reuse"
        );
    }

    #[test]
    fn buffers_take_from_the_budget_past_their_free_share_and_give_it_back() {
        let budget = MemoryBudget::new(3 * FREE);
        let (mut a, mut b) = (Held::new(budget.clone()), Held::new(budget.clone()));
        a.track(FREE).expect("free");
        a.track(2 * FREE).expect("within the budget");
        a.track(FREE + 10).expect("smaller: nothing more");
        b.track(FREE / 2).expect("free");
        assert_eq!(
            b.track(2 * FREE),
            Err(TooLarge {
                buffered: 2 * FREE,
                total: 3 * FREE,
                limit: 3 * FREE
            })
        );
        // Under its free share again, `a` gives back what it took, and `b` fits.
        a.track(100).expect("free");
        b.track(2 * FREE).expect("given back");
    }

    #[test]
    fn a_buffer_growing_by_small_frames_takes_in_steps_and_within_its_limit() {
        let budget = MemoryBudget::new(8 * FREE);
        let mut seat = Held::with_limit(budget.clone(), 2 * FREE);
        // 20-byte frames past the free share: each would take a whole unit of the budget.
        let mut held = FREE;
        while held + 20 <= 2 * FREE {
            held += 20;
            seat.track(held).expect("within the limit");
        }
        // Past its free share a buffer counts whole: about what it holds, not a unit per frame.
        let taken = 8 * FREE - budget.available();
        assert!(taken < held + STEP, "took {taken} bytes for {held} bytes");
        assert_eq!(
            seat.track(3 * FREE).map_err(|e| e.limit),
            Err(2 * FREE),
            "past its limit, with the budget free"
        );
    }
}
