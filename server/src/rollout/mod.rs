//! Safe rollout: the ladder from running a module on one request on the
//! author's machine to live traffic. Today: the local run ([`local`],
//! `gavel strategy run`) and the comparison of two modules on a recorded
//! capture ([`whatif`], `gavel strategy whatif`), both offline.

pub mod local;
pub mod whatif;
