//! Memory for answers built in tdb's own memory (rows of queries run through the API), counted
//! before it is taken: each request may hold up to its own limit, and all requests together up
//! to a process-wide budget. The API, the proxy and the jobs share one process, so one request
//! that asks for gigabytes must fail alone instead of taking the process down.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budgets are counted in units of this many bytes (a semaphore counts at most `u32::MAX`
/// permits per acquisition).
const UNIT: usize = 1024;

/// The process-wide budget for answers being built; cheap to clone.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    units: Arc<Semaphore>,
    total: usize,
}

impl MemoryBudget {
    pub fn new(bytes: usize) -> Self {
        let units = bytes.div_ceil(UNIT).max(1);
        Self {
            units: Arc::new(Semaphore::new(units)),
            total: units * UNIT,
        }
    }

    /// The budget's size in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes not taken now.
    pub fn available(&self) -> usize {
        self.units.available_permits() * UNIT
    }

    /// An empty answer of one request, which may grow to `limit` bytes. Clones share it (the
    /// sessions of one request, several databases queried at once).
    pub fn answer(&self, limit: usize) -> Answer {
        Answer(Arc::new(Mutex::new(Held {
            budget: self.clone(),
            limit,
            used: 0,
            permits: None,
        })))
    }
}

impl Default for MemoryBudget {
    /// 256 MiB.
    fn default() -> Self {
        Self::new(256 << 20)
    }
}

/// Why an answer could not take more memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverBudget {
    /// This request's answer would pass its own limit.
    #[error("the answer is larger than {} MiB, the limit of one request (max_answer_bytes)", mib(*limit))]
    Answer { limit: usize },
    /// The answers being built by all requests together would pass the process's budget.
    #[error("answers being built take the whole {} MiB that tdb allows them (answer_memory_budget); try again shortly", mib(*total))]
    Process { total: usize },
}

fn mib(bytes: usize) -> usize {
    bytes.div_ceil(1 << 20)
}

/// The memory one request's answer holds; given back when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Answer(Arc<Mutex<Held>>);

#[derive(Debug)]
struct Held {
    budget: MemoryBudget,
    limit: usize,
    used: usize,
    /// What was taken, as one permit: an answer that grows by many small takes holds one.
    permits: Option<OwnedSemaphorePermit>,
}

impl Answer {
    /// Takes `bytes` more, or says which budget it would pass (taking nothing).
    pub fn take(&self, bytes: usize) -> Result<(), OverBudget> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let limit = held.limit;
        if held.used.saturating_add(bytes) > limit {
            return Err(OverBudget::Answer { limit });
        }
        // The answer's whole size is rounded up to units, not each take: many small takes
        // cost what one of their sum would.
        let units = (held.used + bytes).div_ceil(UNIT) - held.used.div_ceil(UNIT);
        let units = u32::try_from(units).map_err(|_| OverBudget::Answer { limit })?;
        if units > 0 {
            let permit = held
                .budget
                .units
                .clone()
                .try_acquire_many_owned(units)
                .map_err(|_| OverBudget::Process {
                    total: held.budget.total,
                })?;
            match &mut held.permits {
                Some(permits) => permits.merge(permit),
                None => held.permits = Some(permit),
            }
        }
        held.used += bytes;
        Ok(())
    }

    /// Bytes taken so far.
    pub fn used(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_stops_at_its_limit_and_all_answers_at_the_budget() {
        let budget = MemoryBudget::new(10 * UNIT);
        let a = budget.answer(6 * UNIT);
        a.take(4 * UNIT).expect("within both");
        assert_eq!(
            a.take(3 * UNIT),
            Err(OverBudget::Answer { limit: 6 * UNIT })
        );
        let b = budget.answer(8 * UNIT);
        let shared = b.clone();
        b.take(5 * UNIT).expect("within both");
        assert_eq!(
            shared.take(2 * UNIT),
            Err(OverBudget::Process { total: 10 * UNIT })
        );
        drop(a);
        shared.take(2 * UNIT).expect("a gave its memory back");
        assert_eq!(b.used(), 7 * UNIT);
        assert!(
            OverBudget::Answer { limit: 64 << 20 }
                .to_string()
                .contains("64 MiB")
        );
    }

    #[test]
    fn small_takes_cost_what_their_sum_does() {
        let budget = MemoryBudget::new(64 * UNIT);
        let answer = budget.answer(64 * UNIT);
        // 4,000 takes of 16 bytes: 62.5 units together, not one unit each.
        for _ in 0..4000 {
            answer.take(16).expect("within the budget");
        }
        assert_eq!(budget.available(), UNIT);
        drop(answer);
        assert_eq!(budget.available(), 64 * UNIT);
    }
}
