//! A database's schema as introspection reports it. The types live in `tdb-types`, since the
//! API answers with them as they are.

pub use tdb_types::schema::*;
