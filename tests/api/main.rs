//! Integration tests: a real cartero on 127.0.0.1:0, spoken to over HTTP and through the
//! real binary, with real peers where a test needs one (see `peers.rs`).

mod accounts;
mod cli;
mod crash;
mod delivery;
mod helpers;
mod peer_smtp;
mod peers;
mod permissions;
mod probe;
mod probe_api;
mod system;
mod web;
