//! EnigmaDB's production side: what runs the sans-IO node over real sockets
//! and files, and speaks to real clients.
//!
//! # Modules
//!
//! - [`resp`]: RESP2, the Redis wire protocol: an incremental, bounded
//!   request parser and the reply encoder.
//! - [`command`]: client commands checked and typed, with Redis-style errors.

pub mod command;
pub mod resp;
