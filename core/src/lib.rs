//! `aka-core`: the `no_std`, no-heap int8 runtime of aka.
//!
//! Everything here runs on a Cortex-M microcontroller and on the host with bit-identical integer
//! results. Nothing allocates; nothing panics on bad input (errors are typed).
#![no_std]
#![forbid(unsafe_code)]

pub mod rng;
