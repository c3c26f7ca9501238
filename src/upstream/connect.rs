//! Opening a connection to the upstream: TCP, then TLS for an `https://`
//! upstream (SNI and certificate checks by rustls, with the roots and
//! client certificate of `upstream.tls`), then the HTTP/1.1 handshake.
//! Every connection carries a [`Meter`] (see [`super::transport`]).

use super::request::SendBody;
use super::transport::{Meter, Plaintext, Wire};
use super::UpstreamError;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The sending half of an open upstream connection and its byte counts.
pub struct Opened {
    pub sender: SendRequest<SendBody>,
    pub meter: Arc<Meter>,
}

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

    /// A new connection, ready for a request; TCP connect, TLS handshake
    /// and HTTP handshake all within the connect timeout.
    pub async fn open(&self) -> Result<Opened, UpstreamError> {
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

    async fn open_untimed(&self) -> Result<Opened, UpstreamError> {
        let unreachable = |what: &str, cause: &dyn std::fmt::Display| UpstreamError::Unreachable {
            cause: format!("{}: {what}{cause}", self.address),
        };
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|err| unreachable("", &err))?;
        let _ = tcp.set_nodelay(true);
        let meter = Arc::new(Meter::default());
        let sender = match &self.tls {
            None => handshake(Wire::new(tcp, meter.clone(), true)).await,
            Some(tls) => {
                let wire = Wire::new(tcp, meter.clone(), false);
                let stream = tls
                    .connector
                    .connect(tls.server_name.clone(), wire)
                    .await
                    .map_err(|err| unreachable("TLS handshake failed: ", &err))?;
                handshake(Plaintext::new(stream, meter.clone())).await
            }
        }
        .map_err(|err| unreachable("", &err))?;
        Ok(Opened { sender, meter })
    }
}

/// The HTTP/1.1 handshake on `io`; the connection is driven by a task of
/// the current runtime.
async fn handshake<IO>(io: IO) -> Result<SendRequest<SendBody>, hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(io))
        .await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
