//! [`Forwarder`]: sends a judged request to the configured upstream over the
//! client connection's keep-alive connection; the response streams back.

use super::body::UpstreamBody;
use super::connect::{Connector, TlsTarget};
use super::headers::remove_hop_by_hop;
use super::lease::UpstreamLease;
use super::pool::UpstreamPool;
use super::request::UpstreamRequest;
use super::UpstreamError;
use crate::canonical::CanonicalPath;
use crate::config::UpstreamConfig;
use http::{HeaderValue, Response, Uri};
use std::sync::Arc;

/// Sends requests to the configured upstream.
pub struct Forwarder {
    pool: Arc<UpstreamPool>,
    config: UpstreamConfig,
    host: HeaderValue,
}

impl Forwarder {
    pub fn new(config: UpstreamConfig) -> Self {
        let default_port = if config.tls.is_some() { 443 } else { 80 };
        let address = match config.authority.port_u16() {
            Some(_) => config.authority.to_string(),
            None => format!("{}:{default_port}", config.authority.host()),
        };
        let tls = config.tls.as_ref().map(|tls| TlsTarget {
            connector: tokio_rustls::TlsConnector::from(tls.client_config()),
            server_name: tls.server_name().clone(),
        });
        let pool = Arc::new(UpstreamPool::new(
            Connector::new(address, tls, config.connect_timeout),
            config.pool_idle_timeout,
            config.pool_max_idle_per_host,
        ));
        let host = HeaderValue::from_str(config.authority.as_str())
            .expect("a validated authority is a valid header value");
        Forwarder { pool, config, host }
    }

    /// A new lease for one client connection (see [`UpstreamLease`]).
    pub fn lease(&self) -> UpstreamLease {
        UpstreamLease::new(self.pool.clone())
    }

    pub fn forward_authorization(&self) -> bool {
        self.config.forward_authorization
    }

    pub fn upstream_host(&self) -> &HeaderValue {
        &self.host
    }

    /// The origin-form request target for a canonical path and the original query.
    pub fn upstream_uri(
        &self,
        path: &CanonicalPath,
        query: Option<&str>,
    ) -> Result<Uri, UpstreamError> {
        let mut target =
            String::with_capacity(self.config.path_prefix.len() + path.as_str().len() + 64);
        target.push_str(&self.config.path_prefix);
        target.push_str(path.as_str());
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        Uri::try_from(target).map_err(|e| UpstreamError::BadTarget(e.to_string()))
    }

    /// Sends the request on the client connection's upstream connection
    /// (sending it again only when [`UpstreamLease::send`] says it may),
    /// all within the response timeout; the response's hop-by-hop headers
    /// are removed. The body may then pause for up to the response timeout
    /// between two reads.
    pub async fn send(
        &self,
        lease: &UpstreamLease,
        request: UpstreamRequest,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let mut response = lease.send(&request, self.config.response_timeout).await?;
        remove_hop_by_hop(response.headers_mut());
        Ok(response)
    }
}
