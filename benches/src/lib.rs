//! Shared pieces of the benchmark binaries.

pub mod install;
pub mod proc;
pub mod workload;
