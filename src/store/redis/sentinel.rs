//! Finding the primary through Redis Sentinel: all sentinels are asked at
//! once (`SENTINEL MASTER name`); as soon as a majority of them answered
//! (or all that could), the primary of the newest configuration among the
//! answers (the highest `config-epoch`) wins. So a sentinel that is down or
//! hung costs nothing, and one that has not yet heard of a failover does
//! not send the gateway back to the old primary. A primary the sentinels
//! see as down (`s_down`, `o_down`) is not used: requests fail fast until
//! the failover is done. The connections to the sentinels are kept and
//! reused; one that fails is dropped and opened again on the next ask.
//!
//! The `redis` crate's own `sentinel` module is not used: it checks the
//! primary's role on a throwaway connection of its own, and the store must
//! check the role on the very connection that will serve (see
//! [`super::link`]), every check interval, without a new connection each time.

use super::options::{RedisOptions, Topology};
use redis::aio::MultiplexedConnection;
use redis::{Client, ErrorKind, RedisError, RedisResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The kept connection to each sentinel, by index.
type Connections = Arc<Mutex<Vec<Option<MultiplexedConnection>>>>;

/// Asks the sentinels where the primary is.
pub struct Resolver {
    master_name: String,
    sentinels: Vec<(String, Client)>,
    connections: Connections,
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
            connections: Arc::new(Mutex::new(vec![None; sentinels.len()])),
            sentinels,
            options: options.clone(),
        })
    }

    /// `host:port` of the primary, by the newest configuration a majority
    /// of the sentinels (or all that answered) report.
    pub async fn primary(&self) -> RedisResult<String> {
        let (answers, mut received) = tokio::sync::mpsc::unbounded_channel();
        for (index, (url, client)) in self.sentinels.iter().enumerate() {
            let ask = ask(
                index,
                client.clone(),
                self.connections.clone(),
                self.master_name.clone(),
                self.options.connect_timeout(),
            );
            let answers = answers.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let _ = answers.send((url, ask.await));
            });
        }
        drop(answers);
        let majority = self.sentinels.len() / 2 + 1;
        let mut views: Vec<View> = Vec::new();
        let mut last_error = None;
        while let Some((url, answer)) = received.recv().await {
            match answer {
                Ok(Some(view)) => {
                    views.push(view);
                    if views.len() >= majority {
                        break;
                    }
                }
                Ok(None) => {
                    last_error = Some(RedisError::from((
                        ErrorKind::MasterNameNotFoundBySentinel,
                        "the sentinel does not know the primary",
                        format!("{url} has no master named `{}`", self.master_name),
                    )))
                }
                Err(err) => last_error = Some(err),
            }
        }
        let Some(newest) = views.into_iter().max_by_key(|view| view.epoch) else {
            return Err(last_error.unwrap_or_else(|| {
                RedisError::from((ErrorKind::EmptySentinelList, "no sentinel configured"))
            }));
        };
        if newest.down {
            return Err(RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "the sentinels see the primary as down",
                format!("{} (a failover is due)", newest.addr),
            )));
        }
        Ok(newest.addr)
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

/// What one sentinel says about the primary.
struct View {
    /// `host:port`.
    addr: String,
    /// The configuration epoch this view belongs to (higher is newer).
    epoch: u64,
    /// The sentinel sees the primary as down (`s_down` or `o_down`).
    down: bool,
}

/// Asks sentinel `index` about the primary, on its kept connection (opened
/// now if there is none; dropped if it fails). `None`: the sentinel does
/// not monitor that name.
async fn ask(
    index: usize,
    client: Client,
    connections: Connections,
    master_name: String,
    limit: Duration,
) -> RedisResult<Option<View>> {
    let cached = connections.lock().unwrap_or_else(|e| e.into_inner())[index].clone();
    let mut conn = match cached {
        Some(conn) => conn,
        None => {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(limit))
                .set_response_timeout(Some(limit));
            let conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            connections.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(conn.clone());
            conn
        }
    };
    let answer: RedisResult<HashMap<String, String>> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(&master_name)
        .query_async(&mut conn)
        .await;
    let fields = match answer {
        Ok(fields) => fields,
        Err(err) if err.to_string().contains("No such master") => return Ok(None),
        Err(err) => {
            connections.lock().unwrap_or_else(|e| e.into_inner())[index] = None;
            return Err(err);
        }
    };
    let (Some(ip), Some(port)) = (fields.get("ip"), fields.get("port")) else {
        return Ok(None);
    };
    let flags = fields.get("flags").map(String::as_str).unwrap_or_default();
    Ok(Some(View {
        addr: if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        },
        epoch: fields
            .get("config-epoch")
            .and_then(|e| e.parse().ok())
            .unwrap_or(0),
        down: flags.contains("s_down") || flags.contains("o_down"),
    }))
}
