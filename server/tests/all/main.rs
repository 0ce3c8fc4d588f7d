//! Gavel's integration tests: one binary, a module per feature.

mod admin;
mod bid;
mod runtime;
mod support;
