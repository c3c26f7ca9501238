//! Integration tests: one test binary (fast to link) with a module per area.

mod architecture;
mod cli;
mod credential_reads;
#[allow(dead_code)] // shared helpers; not every test module uses all of them
mod harness;
mod http1;
mod policy;
mod proxy;
mod request_path;
mod review;
mod review2;
mod review3;
mod review4;
mod store_contract;
mod token_api;
mod workers;
