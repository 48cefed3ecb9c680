//! Voxline media relay control plane.
pub mod config;
pub mod ports;
pub mod session;
