//! Safe rollout: the ladder from running a module on one request on the
//! author's machine to live traffic. Today: the local run
//! ([`local`], `gavel strategy run`), which needs no server.

pub mod local;
