//! The data plane: one proxy per wire protocol. So far the PostgreSQL startup codec, the first
//! thing every connection sends and the first input from the network the proxy must not trust.

pub mod pg;
