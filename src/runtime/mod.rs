//! Running the gateway: the accept loop and HTTP connections ([`listener`]),
//! one single-threaded runtime per CPU ([`workers`]), and what triggers a
//! live reload ([`reload`]).

pub mod listener;
pub mod reload;
pub mod workers;
