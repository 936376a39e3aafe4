//! The registry: repository names and references (`name`), manifest media types and
//! parsing (`media`), and the distribution server (`server`) on the reference registry's
//! on-disk layout. The push/pull client will live beside the server and share the first
//! two.

pub mod media;
pub mod name;
pub mod server;
#[doc(hidden)]
pub mod testutil;

pub use strata_store::{Algorithm, Digest};
