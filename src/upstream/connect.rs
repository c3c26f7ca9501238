//! Opening a connection to the upstream: TCP, then TLS for an `https://`
//! upstream (SNI and certificate checks by rustls, with the roots and
//! client certificate of `upstream.tls`). Every connection carries a
//! [`Meter`] (see [`super::transport`]).

use super::client::{Connection, UpstreamIo};
use super::transport::{Meter, Plaintext, Wire};
use super::UpstreamError;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// TLS settings for an `https://` upstream.
pub struct TlsTarget {
    pub connector: TlsConnector,
    /// The name sent as SNI and checked against the certificate (an IP
    /// address is checked, and not sent as SNI).
    pub server_name: ServerName<'static>,
}

/// Opens connections to one upstream.
pub struct Connector {
    /// `host:port`.
    address: String,
    tls: Option<TlsTarget>,
    timeout: Duration,
}

impl Connector {
    pub fn new(address: String, tls: Option<TlsTarget>, timeout: Duration) -> Self {
        Connector {
            address,
            tls,
            timeout,
        }
    }

    /// A new connection, ready for a request; TCP connect and TLS
    /// handshake within the connect timeout.
    pub async fn open(&self) -> Result<Connection, UpstreamError> {
        tokio::time::timeout(self.timeout, self.open_untimed())
            .await
            .map_err(|_| UpstreamError::Unreachable {
                cause: format!(
                    "{}: no connection within {} ms",
                    self.address,
                    self.timeout.as_millis()
                ),
            })?
    }

    async fn open_untimed(&self) -> Result<Connection, UpstreamError> {
        let unreachable = |what: &str, cause: &dyn std::fmt::Display| UpstreamError::Unreachable {
            cause: format!("{}: {what}{cause}", self.address),
        };
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|err| unreachable("", &err))?;
        let _ = tcp.set_nodelay(true);
        let meter = Arc::new(Meter::default());
        let io: Box<dyn UpstreamIo> = match &self.tls {
            None => Box::new(Wire::new(tcp, meter.clone(), true)),
            Some(tls) => {
                let wire = Wire::new(tcp, meter.clone(), false);
                let stream = tls
                    .connector
                    .connect(tls.server_name.clone(), wire)
                    .await
                    .map_err(|err| unreachable("TLS handshake failed: ", &err))?;
                Box::new(Plaintext::new(stream, meter.clone()))
            }
        };
        Ok(Connection::new(io, meter))
    }
}
