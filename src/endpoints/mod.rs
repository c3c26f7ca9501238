//! What the gateway answers itself, never forwarding: the reserved
//! `/_tokengate/` endpoints ([`admin`]), the Terraform-Enterprise-compatible
//! token API ([`tokens`]) and team access API ([`team_access`]).

pub mod admin;
pub mod team_access;
pub mod tokens;
