//! Finding the primary through Redis Sentinel: the sentinels are asked in
//! the configured order (`SENTINEL GET-MASTER-ADDR-BY-NAME`), the first one
//! that names the primary wins. The connections to the sentinels are kept
//! and reused; one that fails is dropped and opened again on the next ask.
//!
//! The `redis` crate's own `sentinel` module is not used: it checks the
//! primary's role on a throwaway connection of its own, and the store must
//! check the role on the very connection that will serve (see
//! [`super::link`]), every check interval, without a new connection each time.

use super::options::{RedisOptions, Topology};
use redis::aio::MultiplexedConnection;
use redis::{Client, ErrorKind, RedisError, RedisResult};
use std::sync::Mutex;

/// Asks the sentinels where the primary is.
pub struct Resolver {
    master_name: String,
    sentinels: Vec<(String, Client)>,
    connections: Mutex<Vec<Option<MultiplexedConnection>>>,
    options: RedisOptions,
}

impl Resolver {
    pub fn new(options: &RedisOptions) -> RedisResult<Resolver> {
        let Topology::Sentinel {
            master_name,
            urls,
            password,
            ..
        } = &options.topology
        else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "not a Sentinel topology",
            )));
        };
        let sentinels = urls
            .iter()
            .map(|url| {
                Ok((
                    url.clone(),
                    options.sentinel_client(url, password.as_ref())?,
                ))
            })
            .collect::<RedisResult<Vec<_>>>()?;
        Ok(Resolver {
            master_name: master_name.clone(),
            connections: Mutex::new(vec![None; sentinels.len()]),
            sentinels,
            options: options.clone(),
        })
    }

    /// `host:port` of the primary, from the first sentinel that knows it.
    pub async fn primary(&self) -> RedisResult<String> {
        let mut last_error = None;
        for (index, (url, client)) in self.sentinels.iter().enumerate() {
            match self.ask(index, client).await {
                Ok(Some((host, port))) => {
                    return Ok(if host.contains(':') {
                        format!("[{host}]:{port}")
                    } else {
                        format!("{host}:{port}")
                    })
                }
                Ok(None) => {
                    last_error = Some(RedisError::from((
                        ErrorKind::MasterNameNotFoundBySentinel,
                        "the sentinel does not know the primary",
                        format!("{url} has no master named `{}`", self.master_name),
                    )))
                }
                Err(err) => {
                    self.connections.lock().unwrap_or_else(|e| e.into_inner())[index] = None;
                    last_error = Some(err);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            RedisError::from((ErrorKind::EmptySentinelList, "no sentinel configured"))
        }))
    }

    async fn ask(&self, index: usize, client: &Client) -> RedisResult<Option<(String, u16)>> {
        let cached = self.connections.lock().unwrap_or_else(|e| e.into_inner())[index].clone();
        let mut conn = match cached {
            Some(conn) => conn,
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.options.connect_timeout()))
                    .set_response_timeout(Some(self.options.connect_timeout()));
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                self.connections.lock().unwrap_or_else(|e| e.into_inner())[index] =
                    Some(conn.clone());
                conn
            }
        };
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.master_name)
            .query_async(&mut conn)
            .await
    }

    /// The client of the data node at `addr` (`host:port`), with the data
    /// nodes' user, password and TLS (TLS when the sentinels are `rediss://`).
    pub fn node_client(&self, addr: &str) -> RedisResult<Client> {
        let tls = self
            .sentinels
            .first()
            .is_some_and(|(url, _)| url.starts_with("rediss://"));
        let scheme = if tls { "rediss" } else { "redis" };
        self.options.node_client(&format!("{scheme}://{addr}"))
    }
}
