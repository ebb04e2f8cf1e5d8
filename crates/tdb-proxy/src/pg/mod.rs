//! The PostgreSQL wire protocol, one message type per file.

pub mod startup;
