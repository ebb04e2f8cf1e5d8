//! The protocol-pure foundation of tdb's Redis proxy: RESP2/RESP3 framing (`frame`), a command
//! table loaded from the deployed server's own `COMMAND INFO` answer that finds the key arguments
//! of a request (`command`), the rewriting that keeps a tenant inside its key prefix (`prefix`),
//! and the command policy built on them (`policy`). Nothing here does IO; the proxy feeds bytes
//! in and writes frames out.

pub mod command;
pub mod frame;
pub mod policy;
pub mod prefix;
