//! Gavel's integration tests: one binary, a module per feature.

mod runtime;
mod support;
