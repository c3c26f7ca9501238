//! Integration tests: one test binary (fast to link) with a module per area.

mod access;
mod admin;
mod architecture;
mod auth;
mod cli;
#[allow(dead_code)] // shared helpers; not every test module uses all of them
mod harness;
mod headers;
mod logging;
mod policy;
mod proxy;
mod reload;
mod request_path;
mod store_contract;
mod team_access;
mod token_api;
mod workers;
