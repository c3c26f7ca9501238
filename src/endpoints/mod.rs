//! What the gateway answers itself, never forwarding: the reserved
//! `/_tokengate/` endpoints ([`admin`]) and the Terraform-Enterprise-compatible
//! token API ([`tokens`]).

pub mod admin;
pub mod tokens;
