//! The `enigmadb` library is the production server, which lives in its own
//! crate (`server/`, `enigma-server`) so that only it is rebuilt for the
//! madsim job; this re-exports its modules under their old paths for the
//! binary and the integration tests.

pub use enigma_server::*;
