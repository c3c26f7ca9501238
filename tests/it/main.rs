//! Integration tests: one test binary (fast to link) with a module per area.

mod access;
mod admin;
mod architecture;
mod attacks;
mod auth;
mod cli;
mod deploy;
mod failover;
mod fast_reads;
#[allow(dead_code)] // shared helpers; not every test module uses all of them
mod harness;
mod headers;
mod http1;
mod http2;
mod include_lists;
mod logging;
mod object_storage;
mod object_storage_attacks;
mod org_resources;
mod policy;
mod policy_gaps;
mod proxy;
mod rails;
#[allow(dead_code)] // shared helpers; not every test module uses all of them
mod redis_harness;
mod reload;
mod request_path;
mod request_properties;
mod store_contract;
mod store_reconnect;
mod streamed_upload_attacks;
mod team_access;
mod team_org_writes;
mod terraform_cli;
mod tfe_clients;
mod tls;
#[allow(dead_code)] // shared helpers; not every test module uses all of them
mod tls_harness;
mod token_api;
mod token_endpoints;
mod traces;
mod upstream_answers;
mod upstream_keepalive;
mod upstream_tls;
mod web_ui;
mod web_ui_browser;
mod workers;
