//! Team workspace access: the model ([`model`], pure data, low in the layer
//! order so the store can keep it). The resolver and the access check
//! follow.

pub mod model;
