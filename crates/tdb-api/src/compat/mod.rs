//! The reference's forms of fields that tdb reads or writes another way (API.md, "a client
//! written against the reference works"): each is accepted in both forms on input and answered
//! in the form the reference shows for that endpoint.

pub mod autodb_error;
pub use tdb_types::{isolation, version};
