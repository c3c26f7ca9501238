//! Integration tests: one test binary (fast to link) with a module per area.

mod admin;
mod architecture;
mod attacks;
mod auth;
mod cli;
#[allow(dead_code)] // shared helpers; not every test module uses all of them
mod harness;
mod headers;
mod logging;
mod policy;
mod proxy;
mod rails;
mod reload;
mod request_path;
mod request_properties;
mod store_contract;
mod tfe_clients;
mod token_api;
mod token_endpoints;
mod web_ui;
mod web_ui_browser;
mod workers;
