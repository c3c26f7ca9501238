//! Running the gateway: the accept loop and graceful drain ([`listener`]),
//! one client connection as HTTP/1.1 ([`connection`]), one single-threaded
//! runtime per CPU ([`workers`]), and what triggers a live reload
//! ([`reload`]).

pub mod connection;
pub mod listener;
pub mod reload;
pub mod workers;
