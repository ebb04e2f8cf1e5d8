//! A session's way to its server: a seat on its user's shared lane (see [`super::lane`]) while
//! it sends only commands that keep no state on a connection, then a connection of its own
//! from the first command that needs one, for the rest of the session. Sessions that log in
//! with HELLO have their own connection from the start (it carries their protocol and name).
//!
//! On its own connection a session stops reading its client while the server does not read
//! (`write_all`). A lane takes requests without waiting, so the session keeps count instead: it
//! stops reading its client while what it sent over the lane and has not had answered passes
//! [`FREE`] bytes ([`Link::is_full`]).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use tdb_resp::command::CommandTable;
use tdb_resp::frame::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::backend::{Backend, BackendError, Tables, Target};
use super::lane::Seat;
use super::memory::FREE;

pub struct Link<'a> {
    way: Way,
    /// How a connection of the session's own is opened when it needs one.
    target: Target,
    tables: &'a Tables,
}

enum Way {
    Shared {
        seat: Seat,
        /// Replies taken from the seat and not yet handed to the relay.
        arrived: VecDeque<Frame>,
        /// What was sent and is not yet answered.
        unanswered: Unanswered,
    },
    Own(Backend),
}

impl<'a> Link<'a> {
    pub fn own(backend: Backend, target: Target, tables: &'a Tables) -> Self {
        Self {
            way: Way::Own(backend),
            target,
            tables,
        }
    }

    pub fn shared(seat: Seat, target: Target, tables: &'a Tables) -> Self {
        Self {
            way: Way::Shared {
                seat,
                arrived: VecDeque::new(),
                unanswered: Unanswered::default(),
            },
            target,
            tables,
        }
    }

    /// The server's answer to the HELLO the session's own connection was opened with.
    pub fn take_hello(&mut self) -> Option<Frame> {
        match &mut self.way {
            Way::Own(backend) => backend.hello.take(),
            Way::Shared { .. } => None,
        }
    }

    /// The server's command table (the lane's and the own connection's are the same one).
    pub fn table(&self) -> &Arc<CommandTable> {
        match &self.way {
            Way::Shared { seat, .. } => seat.table(),
            Way::Own(backend) => &backend.table,
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self.way, Way::Shared { .. })
    }

    /// Whether the session should stop reading its client until replies come: what it sent
    /// over its lane and has not had answered passes [`FREE`] bytes.
    pub fn is_full(&self) -> bool {
        match &self.way {
            Way::Shared { unanswered, .. } => unanswered.bytes >= FREE,
            Way::Own(_) => false,
        }
    }

    /// The session's own connection, opened now if it has none. Only called with no reply
    /// owed: what was sent over the lane has been answered.
    pub async fn own_connection(&mut self) -> Result<&mut Backend, BackendError> {
        if let Way::Shared { .. } = self.way {
            let backend = Backend::connect(&self.target, self.tables).await?;
            self.way = Way::Own(backend);
        }
        match &mut self.way {
            Way::Own(backend) => Ok(backend),
            Way::Shared { .. } => unreachable!("the connection was opened above"),
        }
    }

    /// Sends `requests`, which owe `owed` replies.
    pub async fn send(&mut self, requests: &mut BytesMut, owed: usize) -> Result<(), BackendError> {
        match &mut self.way {
            Way::Own(backend) => {
                backend.io.write_all(requests).await?;
            }
            Way::Shared {
                seat, unanswered, ..
            } => {
                seat.send(requests, owed)?;
                unanswered.sent(requests.len(), owed);
            }
        }
        requests.clear();
        super::memory::settle(requests);
        Ok(())
    }

    /// Waits until replies can be taken with [`buffered`](Self::buffered). Cancel-safe.
    pub async fn readable(&mut self) -> Result<(), BackendError> {
        match &mut self.way {
            Way::Own(backend) => match backend.io.read_buf(&mut backend.buf).await? {
                0 => Err(BackendError::Closed),
                _ => backend.track(),
            },
            Way::Shared {
                seat,
                arrived,
                unanswered,
            } => {
                if arrived.is_empty() {
                    let frame = seat.reply().await?;
                    unanswered.answered();
                    arrived.push_back(frame);
                }
                Ok(())
            }
        }
    }

    /// A reply that has come, without waiting.
    pub fn buffered(&mut self) -> Result<Option<Frame>, BackendError> {
        match &mut self.way {
            Way::Own(backend) => backend.buffered_frame(),
            Way::Shared {
                seat,
                arrived,
                unanswered,
            } => match arrived.pop_front() {
                Some(frame) => Ok(Some(frame)),
                None => {
                    let frame = seat.ready();
                    if frame.is_some() {
                        unanswered.answered();
                    }
                    Ok(frame)
                }
            },
        }
    }

    /// The next reply, waiting for it.
    pub async fn read_frame(&mut self) -> Result<Frame, BackendError> {
        match &mut self.way {
            Way::Own(backend) => backend.read_frame().await,
            Way::Shared {
                seat,
                arrived,
                unanswered,
            } => match arrived.pop_front() {
                Some(frame) => Ok(frame),
                None => {
                    let frame = seat.reply().await?;
                    unanswered.answered();
                    Ok(frame)
                }
            },
        }
    }
}

/// Requests sent over a lane and not yet answered: the bytes of each send, with the replies
/// they still owe. Every reply over a lane answers a request (a lane never subscribes).
#[derive(Default)]
struct Unanswered {
    sends: VecDeque<(usize, usize)>,
    bytes: usize,
}

impl Unanswered {
    fn sent(&mut self, bytes: usize, owed: usize) {
        if owed > 0 {
            self.sends.push_back((bytes, owed));
            self.bytes += bytes;
        }
    }

    fn answered(&mut self) {
        if let Some((bytes, owed)) = self.sends.front_mut() {
            *owed -= 1;
            if *owed == 0 {
                self.bytes -= *bytes;
                self.sends.pop_front();
            }
        }
    }
}
