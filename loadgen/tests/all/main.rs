//! Integration tests of gavel-loadgen: one binary, one module per feature.
//! Every server is a test bidder on 127.0.0.1; every load is bounded in
//! count and time.

mod capture;
mod import;
mod replay;
mod reports;
mod support;
mod synth;
