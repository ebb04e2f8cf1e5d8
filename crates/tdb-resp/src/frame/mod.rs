//! RESP framing. Requests (arrays of bulk strings, or inline commands as redis-cli types them)
//! and replies (every RESP2 and RESP3 type) are decoded incrementally from a `BytesMut`: a
//! decoder answers `Ok(None)` until a whole frame has arrived, consumes exactly the frame's
//! bytes, never panics, and never allocates on a length the peer has only claimed. Encoding a
//! decoded reply gives back the bytes it was decoded from, so the proxy can pass replies through
//! or rewrite them. After a `ProtocolError` the stream cannot be resynchronised: answer the
//! error's `reply()` and close the connection.

mod encode;
mod error;
mod inline;
mod limits;
mod reply;
mod request;
mod types;
pub(crate) mod wire;

pub use error::ProtocolError;
pub use limits::Limits;
pub use reply::ReplyDecoder;
pub use request::{Request, RequestDecoder};
pub use types::{BigNumber, Double, Frame};

#[cfg(test)]
mod proptests;
