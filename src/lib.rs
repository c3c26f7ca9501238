//! tokengate: an authorization reverse-proxy gateway for Terraform-Enterprise-style
//! workspace APIs. A request passes, in order: [`canonical`] (one canonical
//! path) → [`auth`] (bearer token against the [`store`]) → [`policy`] (rules
//! from the config) → [`forward`] (to the upstream). [`gateway`] runs the
//! stages; [`rejection`] turns every refusal into a JSON:API error; [`reload`]
//! swaps in a new policy while serving, and [`metrics`] counts what happened.
//! [`server`] accepts connections; [`workers`] runs one server per CPU.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod canonical;
pub mod cli;
pub mod config;
pub mod credential_reads;
pub mod dev;
pub mod forward;
pub mod gateway;
pub mod hashing;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod rejection;
pub mod reload;
pub mod request_body;
pub mod server;
pub mod store;
pub mod token;
pub mod token_api;
pub mod tokens;
pub mod upstream_pool;
pub mod workers;
