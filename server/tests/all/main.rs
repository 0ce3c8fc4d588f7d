//! Gavel's integration tests: one binary, a module per feature.

mod admin;
mod assemblyscript;
mod bid;
mod capabilities;
mod contract;
mod fleet;
mod hostile;
mod money;
mod operate;
mod record;
mod rollout;
mod runtime;
mod support;
mod trials;
