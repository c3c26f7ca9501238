//! What the gateway answers itself, never forwarding: the reserved
//! `/_tokengate/` endpoints ([`admin`]) and the Terraform-Enterprise-compatible
//! token API ([`token_api`]).

pub mod admin;
pub mod token_api;
