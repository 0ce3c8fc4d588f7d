//! Safe rollout: the ladder from running a module on one request on the
//! author's machine to live traffic.
//!
//! | rung | where | module |
//! | --- | --- | --- |
//! | local run (`gavel strategy run`) | the author's machine, one request | [`local`] |
//! | what-if (`gavel strategy whatif`) | a recorded capture, offline, every core | [`whatif`] |
//! | shadow | sampled live requests, after the answer is written, within a CPU share | [`shadow`] |
//! | canary | a percentage of users, sticky, rolled back by itself when it fails more | [`canary`] |
//!
//! What-if and shadow report the same figures ([`compare`]).

pub mod canary;
pub mod compare;
pub mod local;
pub mod shadow;
pub mod whatif;
