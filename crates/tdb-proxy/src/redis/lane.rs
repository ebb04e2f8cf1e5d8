//! Shared server connections ("lanes"). A session that sends only commands which keep no state
//! on their connection (keyed data commands, PING, ECHO, TIME) does not need a connection of its
//! own: its requests go over a lane that every such session of the same ACL user on the same
//! server shares. The lane writes what its sessions sent in one write and reads the server's
//! replies in one read, and hands each reply to the session that owes it, in order. Redis
//! answers one connection's requests in the order they came, so the replies come back in the
//! order the lane wrote the requests.
//!
//! A lane is keyed by server and ACL user, so the server's own wall (the tenant's ACL user)
//! still holds every command a session sends over it. It lives on the proxy worker of the session
//! that opened it, and a session of the same user accepted by another worker moves to that worker
//! before it joins (see [`Lanes::claim`]): one lane per user rather than one per worker, so its
//! writes and reads carry more requests each, and handing requests and replies between a lane
//! and its sessions never wakes another thread. A session leaves the lane for a
//! connection of its own (see [`super::relay`]) before its first command that keeps state or
//! may wait: MULTI, WATCH, subscriptions, blocking commands, scripts, CLIENT, HELLO, the
//! `max_keys` checks, FLUSHDB. The lane closes when its last session leaves.
//!
//! What a lane holds for its sessions is bounded. A session stops reading its client while the
//! requests it sent over the lane and has not had answered pass [`super::memory::FREE`] bytes
//! (see [`super::link`]), as a session on its own connection stops while the server does not
//! read. Replies wait in the seat until the session takes them; past the free share they take
//! from the budget for large frames, and a seat whose replies would pass it (its client reads
//! too slowly for what it asked) is cut off with an error while the lane and its other
//! sessions go on.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::BytesMut;
use tdb_engines::budget::MemoryBudget;
use tdb_resp::command::CommandTable;
use tdb_resp::frame::Frame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use super::backend::{Backend, BackendError, Stream, Tables, Target};
use super::memory::{Held, TooLarge};

/// What a lane and its sessions share: sessions write their requests into the inbox and wake
/// the lane when it was empty, so a lane busy with many sessions takes all they sent at once,
/// without a message per request.
struct Shared {
    inbox: Mutex<Inbox>,
    arrived: Notify,
    /// Bytes the lane has taken from the inbox and not yet written (kept for tests only).
    #[cfg(test)]
    writing: AtomicUsize,
    /// Replies the lane has taken requests for and not yet handed on (kept for tests only).
    #[cfg(test)]
    waiting: AtomicUsize,
}

#[derive(Default)]
struct Inbox {
    /// Requests not yet taken by the lane, in the order they were sent.
    output: BytesMut,
    /// Who is owed the replies to `output`'s requests, in order.
    owed: VecDeque<Owed>,
    /// Where each seat's replies go; closed when the lane ends.
    seats: HashMap<u64, Arc<Replies>>,
    /// Cleared when the last seat has gone: the lane ends once every reply owed has come.
    open: bool,
    /// Set when the lane has ended: nothing more can be sent.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A lane's entrance, held by every session on it; the lane ends when the last one goes.
struct Entrance {
    shared: Arc<Shared>,
    table: Arc<CommandTable>,
}

impl Entrance {
    fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }
}

impl Drop for Entrance {
    fn drop(&mut self) {
        self.shared.lock().open = false;
        self.shared.arrived.notify_one();
    }
}

/// No worker: a lane opened off the workers (tests).
const NO_WORKER: usize = usize::MAX;

/// Seat numbers, unique in the process.
static SEATS: AtomicU64 = AtomicU64::new(0);

/// The lanes, by server and user. Each place is locked while its lane opens, so sessions that
/// arrive together wait for one lane rather than open one each, and it names the worker its
/// lane lives on, where the lane's sessions run (see [`crate::workers`]).
#[derive(Default)]
pub struct Lanes(Mutex<Places>);

#[derive(Default)]
struct Places {
    by_key: HashMap<LaneKey, Arc<Place>>,
    /// The size at which closed lanes' places are next swept out: twice what was left at the
    /// last sweep, so a login does not walk every tenant's places each time.
    sweep_at: usize,
}

/// The server and the ACL user.
type LaneKey = (String, String);

#[derive(Default)]
struct Place {
    lane: tokio::sync::Mutex<Weak<Entrance>>,
    /// The worker the lane lives on, or will once the session that claimed it opens it.
    home: AtomicUsize,
}

impl Place {
    /// Whether a lane is open here or being opened (its place locked, or held by a session
    /// that claimed it and has not joined yet).
    fn taken(self: &Arc<Self>) -> bool {
        // One count is the map's, one the caller's.
        Arc::strong_count(self) > 2
            || self
                .lane
                .try_lock()
                .map_or(true, |lane| lane.upgrade().is_some_and(|e| !e.is_closed()))
    }
}

/// A session's claim on its user's lane, taken before it joins: the worker the lane lives on.
/// While the claim is held, later sessions of the user are sent to that worker too.
pub struct Claim {
    place: Arc<Place>,
    key: LaneKey,
}

impl Claim {
    /// The worker the session should run on to join the lane (`None` off the workers).
    pub fn home(&self) -> Option<usize> {
        match self.place.home.load(Ordering::Relaxed) {
            NO_WORKER => None,
            worker => Some(worker),
        }
    }
}

impl Lanes {
    /// Claims the place of `target`'s lane: an open lane (or one being opened) keeps its worker;
    /// otherwise the calling worker becomes the lane's home.
    pub fn claim(&self, target: &Target) -> Claim {
        let key = (target.server_id.clone(), target.user.clone());
        let mut places = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if places.by_key.len() >= places.sweep_at {
            // Places of closed lanes go, unless a session is opening one there now.
            places.by_key.retain(|_, place| {
                Arc::strong_count(place) > 1
                    || place
                        .lane
                        .try_lock()
                        .is_ok_and(|lane| lane.strong_count() > 0)
            });
            places.sweep_at = (places.by_key.len() * 2).max(64);
        }
        let place = places.by_key.entry(key.clone()).or_default().clone();
        if !place.taken() {
            let here = crate::workers::current().unwrap_or(NO_WORKER);
            place.home.store(here, Ordering::Relaxed);
        }
        Claim { place, key }
    }

    /// A seat on the lane of `target`'s server and user, whose place `claim` holds, opening the
    /// lane if there is none: such a lane lives on the calling worker.
    pub async fn join(
        &self,
        claim: Claim,
        target: &Target,
        tables: &Tables,
    ) -> Result<Seat, BackendError> {
        // A claim is for one server and user: never a seat on another's lane.
        let claim = if claim.key.0 == target.server_id && claim.key.1 == target.user {
            claim
        } else {
            self.claim(target)
        };
        let place = claim.place;
        let mut lane = place.lane.lock().await;
        let entrance = match lane.upgrade().filter(|e| !e.is_closed()) {
            Some(entrance) => entrance,
            None => {
                let here = crate::workers::current().unwrap_or(NO_WORKER);
                place.home.store(here, Ordering::Relaxed);
                let backend = Backend::connect(target, tables).await?;
                let shared = Arc::new(Shared {
                    inbox: Mutex::new(Inbox {
                        open: true,
                        ..Inbox::default()
                    }),
                    arrived: Notify::new(),
                    #[cfg(test)]
                    writing: AtomicUsize::new(0),
                    #[cfg(test)]
                    waiting: AtomicUsize::new(0),
                });
                let entrance = Arc::new(Entrance {
                    shared: shared.clone(),
                    table: backend.table.clone(),
                });
                tokio::spawn(run(backend, shared));
                *lane = Arc::downgrade(&entrance);
                entrance
            }
        };
        drop(lane);
        let replies = Arc::new(Replies::new(target.memory.clone()));
        let id = SEATS.fetch_add(1, Ordering::Relaxed);
        {
            let mut shared = entrance.shared.lock();
            if shared.closed {
                return Err(BackendError::Closed);
            }
            shared.seats.insert(id, replies.clone());
        }
        Ok(Seat {
            entrance,
            id,
            replies,
        })
    }

    /// What the open lanes hold for their sessions: requests not yet written and replies not
    /// yet taken (for tests).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        let places = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut held = 0;
        for place in places.by_key.values() {
            let Some(entrance) = place.lane.try_lock().ok().and_then(|lane| lane.upgrade()) else {
                continue;
            };
            let shared = &entrance.shared;
            let inbox = shared.lock();
            held += inbox.output.len() + shared.writing.load(Ordering::Relaxed);
            held += inbox.seats.values().map(|r| r.lock().bytes).sum::<usize>();
        }
        held
    }

    /// Replies the open lanes have taken requests for and not yet handed on (for tests).
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        let places = self.0.lock().unwrap_or_else(|e| e.into_inner());
        places
            .by_key
            .values()
            .filter_map(|place| place.lane.try_lock().ok()?.upgrade())
            .map(|entrance| entrance.shared.waiting.load(Ordering::Relaxed))
            .sum()
    }

    /// Lanes open now (for tests).
    #[cfg(test)]
    pub fn open(&self) -> usize {
        let places = self.0.lock().unwrap_or_else(|e| e.into_inner());
        places
            .by_key
            .values()
            .filter(|place| {
                place
                    .lane
                    .try_lock()
                    .is_ok_and(|lane| lane.strong_count() > 0)
            })
            .count()
    }
}

/// One session's place on a lane.
pub struct Seat {
    entrance: Arc<Entrance>,
    id: u64,
    replies: Arc<Replies>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.entrance.shared.lock().seats.remove(&self.id);
        self.replies.leave();
    }
}

impl Seat {
    pub fn table(&self) -> &Arc<CommandTable> {
        &self.entrance.table
    }

    /// Sends `requests`, which owe `owed` replies; an error when the lane has closed or cut
    /// the seat off (nothing more of its is run).
    pub fn send(&self, requests: &[u8], owed: usize) -> Result<(), BackendError> {
        if let Some(Ended::Unread(e)) = self.replies.lock().ended {
            return Err(BackendError::Unread(e));
        }
        let shared = &self.entrance.shared;
        let mut inbox = shared.lock();
        if inbox.closed {
            return Err(BackendError::Closed);
        }
        // Replies are owed only for requests in `output`: empty, the lane has nothing to take.
        let idle = inbox.output.is_empty();
        inbox.output.extend_from_slice(requests);
        if owed > 0 {
            let inbox = &mut *inbox;
            match inbox.owed.back_mut() {
                Some(last) if last.seat == self.id => last.left += owed,
                _ => inbox.owed.push_back(Owed {
                    seat: self.id,
                    replies: inbox.seats.get(&self.id).cloned(),
                    left: owed,
                }),
            }
        }
        drop(inbox);
        // The lane takes everything in the inbox each time it is woken.
        if idle {
            shared.arrived.notify_one();
        }
        Ok(())
    }

    /// The next reply owed to this session; an error when the lane has closed or cut the seat
    /// off. Cancel-safe.
    pub async fn reply(&mut self) -> Result<Frame, BackendError> {
        loop {
            if let Some(frame) = self.replies.take()? {
                return Ok(frame);
            }
            self.replies.arrived.notified().await;
        }
    }

    /// A reply that has already come, without waiting (why none will come is left to
    /// [`reply`](Self::reply), which the relay waits on next).
    pub fn ready(&mut self) -> Option<Frame> {
        self.replies.take().ok().flatten()
    }
}

/// A seat may keep at most this part of the large-frame budget in replies waiting for its
/// session, so that one slow client leaves the rest to its lane's reads and other sessions.
const SEAT_SHARE: usize = 4;

/// A seat's replies, from the lane to the session.
struct Replies {
    queue: Mutex<Queue>,
    /// Signalled when a reply comes to an empty queue, and when the seat is closed.
    arrived: Notify,
}

struct Queue {
    /// Replies with the bytes they took on the wire.
    frames: VecDeque<(Frame, usize)>,
    bytes: usize,
    /// What `frames` holds of the large-frame budget (`None` for the proxy's own connections).
    memory: Option<Held>,
    /// Why no more replies come: the lane ended, or the seat's replies would have passed the
    /// budget.
    ended: Option<Ended>,
}

#[derive(Clone, Copy)]
enum Ended {
    Closed,
    Unread(TooLarge),
}

impl Replies {
    fn new(budget: Option<MemoryBudget>) -> Self {
        Self {
            queue: Mutex::new(Queue {
                frames: VecDeque::new(),
                bytes: 0,
                memory: budget.map(|budget| {
                    let limit = budget.total() / SEAT_SHARE;
                    Held::with_limit(budget, limit)
                }),
                ended: None,
            }),
            arrived: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands the seat a reply of `size` bytes; `false` when the seat takes no more (it has
    /// gone, or is cut off now because its replies would pass the budget: what it held goes).
    fn give(&self, frame: Frame, size: usize) -> bool {
        let mut queue = self.lock();
        if queue.ended.is_some() {
            return false;
        }
        queue.bytes += size;
        let queue = &mut *queue;
        if let Some(memory) = &mut queue.memory
            && let Err(e) = memory.track(queue.bytes)
        {
            queue.frames.clear();
            queue.bytes = 0;
            let _ = memory.track(0);
            queue.ended = Some(Ended::Unread(e));
            self.arrived.notify_one();
            return false;
        }
        let was_empty = queue.frames.is_empty();
        queue.frames.push_back((frame, size));
        if was_empty {
            self.arrived.notify_one();
        }
        true
    }

    /// The next reply, if one has come.
    fn take(&self) -> Result<Option<Frame>, BackendError> {
        let mut queue = self.lock();
        let queue = &mut *queue;
        match queue.frames.pop_front() {
            Some((frame, size)) => {
                queue.bytes -= size;
                if let Some(memory) = &mut queue.memory {
                    // Smaller: nothing more is taken, and all is given back under the free share.
                    let _ = memory.track(queue.bytes);
                }
                Ok(Some(frame))
            }
            None => match queue.ended {
                None => Ok(None),
                Some(Ended::Closed) => Err(BackendError::Closed),
                Some(Ended::Unread(e)) => Err(BackendError::Unread(e)),
            },
        }
    }

    /// No more replies: those that came are still taken first.
    fn close(&self) {
        self.lock().ended.get_or_insert(Ended::Closed);
        self.arrived.notify_one();
    }

    /// The seat has gone: what came for it goes, and what the lane still reads for it is
    /// dropped as it comes.
    fn leave(&self) {
        let mut queue = self.lock();
        queue.ended.get_or_insert(Ended::Closed);
        queue.frames.clear();
        queue.bytes = 0;
        if let Some(memory) = &mut queue.memory {
            let _ = memory.track(0);
        }
    }
}

/// Who is owed the replies to come, in order.
struct Owed {
    seat: u64,
    /// `None` for a seat that takes no more replies (or that the lane does not know, which
    /// cannot happen: a seat joins first).
    replies: Option<Arc<Replies>>,
    left: usize,
}

/// The lane: writes what its sessions send, reads the server's replies and hands them out.
/// Ends when every seat has gone and every reply owed has come, or when the server goes.
async fn run(backend: Backend, shared: Arc<Shared>) {
    let Backend {
        io,
        buf,
        mut decoder,
        memory,
        ..
    } = backend;
    let mut reading = Reading {
        input: buf,
        decoder: &mut decoder,
        memory,
    };
    let result = match io {
        Stream::Tcp(mut tcp) => {
            let (read, write) = tcp.split();
            serve(read, write, &mut reading, &shared).await
        }
        Stream::Unix(mut unix) => {
            let (read, write) = unix.split();
            serve(read, write, &mut reading, &shared).await
        }
    };
    // Nothing more is taken, and the seats' replies end (what the lane still owed goes with
    // `serve`'s queue).
    {
        let mut inbox = shared.lock();
        inbox.closed = true;
        for (_, replies) in inbox.seats.drain() {
            replies.close();
        }
        inbox.owed.clear();
    }
    if let Err(e) = result {
        tracing::warn!(error = %e, "a shared Redis server connection failed");
    }
}

/// The lane's side of the server's replies.
struct Reading<'a> {
    input: BytesMut,
    decoder: &'a mut tdb_resp::frame::ReplyDecoder,
    /// What `input` and the decoder hold of the large-frame budget.
    memory: Option<Held>,
}

impl Reading<'_> {
    /// Bytes of replies read and not yet handed on: in the buffer, or in the decoder's open
    /// aggregate.
    fn held(&self) -> usize {
        self.input.len() + self.decoder.pending_bytes()
    }
}

async fn serve<R, W>(
    mut read: R,
    mut write: W,
    reading: &mut Reading<'_>,
    shared: &Shared,
) -> Result<(), BackendError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut owed: VecDeque<Owed> = VecDeque::new();
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut open = true;
    loop {
        if !open && owed.is_empty() && output.is_empty() {
            return Ok(());
        }
        tokio::select! {
            () = shared.arrived.notified(), if open => {
                let mut inbox = shared.lock();
                if output.is_empty() {
                    // The buffers trade places: neither is copied.
                    std::mem::swap(&mut output, &mut inbox.output);
                } else {
                    output.extend_from_slice(&inbox.output);
                    inbox.output.clear();
                }
                super::memory::settle(&mut inbox.output);
                #[cfg(test)]
                {
                    let taken: usize = inbox.owed.iter().map(|o| o.left).sum();
                    shared.waiting.fetch_add(taken, Ordering::Relaxed);
                    shared.writing.store(output.len(), Ordering::Relaxed);
                }
                owed.extend(inbox.owed.drain(..));
                open = inbox.open;
            }
            written = write.write_buf(&mut output), if !output.is_empty() => {
                if written? == 0 {
                    return Err(BackendError::Closed);
                }
                #[cfg(test)]
                shared.writing.store(output.len(), Ordering::Relaxed);
                super::memory::settle(&mut output);
            }
            read = read.read_buf(&mut reading.input) => {
                if read? == 0 {
                    return Err(BackendError::Closed);
                }
                // Counted as read, before decoding: one read may bring a whole large frame,
                // which decoding would take out of the count.
                let held = reading.held();
                if let Some(memory) = &mut reading.memory
                    && let Err(e) = memory.track(held)
                {
                    // The session that asked for the reply hears why; the lane, whose
                    // replies can no longer be read in order, closes.
                    if let Some(replies) = owed.front().and_then(|o| o.replies.as_ref()) {
                        replies.give(Frame::Error(format!("ERR {e}").into()), 0);
                    }
                    return Err(e.into());
                }
                // A reply's size: what the decoder took for it over this and earlier reads.
                let mut before = held;
                #[cfg(test)]
                let mut handed = 0;
                while let Some(frame) = reading.decoder.decode(&mut reading.input)? {
                    #[cfg(test)]
                    {
                        handed += 1;
                    }
                    let size = before - reading.input.len();
                    before = reading.held();
                    let Some(front) = owed.front_mut() else {
                        // Nothing was asked: a lane never subscribes or blocks.
                        return Err(BackendError::Refused("an unexpected reply".into()));
                    };
                    // A session that has gone, or was cut off, takes no more replies.
                    if let Some(replies) = &front.replies
                        && !replies.give(frame, size)
                    {
                        front.replies = None;
                    }
                    front.left -= 1;
                    if front.left == 0 {
                        owed.pop_front();
                    }
                }
                #[cfg(test)]
                shared.waiting.fetch_sub(handed, Ordering::Relaxed);
                // What was decoded is handed on: the count comes down (it cannot go up).
                let held = reading.held();
                if let Some(memory) = &mut reading.memory {
                    memory.track(held)?;
                }
            }
        }
    }
}
