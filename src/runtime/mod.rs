//! Running the gateway: the accept loop, what each connection speaks and
//! the graceful drain ([`listener`]), one client connection as HTTP/1.1
//! ([`connection`]) or HTTP/2 ([`http2`]), TLS handshakes and certificate
//! reloads ([`tls`]), telling h2c from HTTP/1.1 ([`sniff`]), one
//! single-threaded runtime per CPU ([`workers`]), and what triggers a live
//! reload ([`reload`]).

pub mod connection;
pub mod http2;
pub mod listener;
pub mod reload;
pub mod sniff;
pub mod tls;
pub mod workers;
