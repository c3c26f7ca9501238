//! What the gateway answers itself, never forwarding: the reserved
//! `/_tokengate/` endpoints ([`admin`]), the Terraform-Enterprise-compatible
//! token API ([`token_api`]) and team access API ([`team_access`]).

pub mod admin;
pub mod team_access;
pub mod token_api;
