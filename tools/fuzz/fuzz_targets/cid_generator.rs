//! `quic::CoreCid`, the generator of the server's connection IDs, for any core count and core.
//!
//! Input: the core count (1..=256), the core, how many IDs to draw, then bytes tried as CIDs.
//! Every generated ID is accepted by its own core's generator, by no other core's, and routed
//! to its core by the router; an arbitrary ID is accepted exactly when the router names the
//! core for it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use moq_relay::net::{CID_LEN, core_of_cid_byte};
use moq_relay::quic::{ConnectionId, ConnectionIdGenerator, CoreCid};
use moq_relay_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let cores = input.below(256) + 1;
    let core = input.below(cores);
    let mut ours = CoreCid::new(core, cores);
    let other = (cores > 1).then(|| CoreCid::new((core + 1) % cores, cores));
    for _ in 0..input.below(16) {
        let cid = ours.generate_cid();
        assert_eq!(cid.len(), CID_LEN);
        assert_eq!(ours.cid_len(), CID_LEN);
        assert_eq!(core_of_cid_byte(cid[0], cores), core);
        assert!(ours.validate(&cid).is_ok());
        if let Some(other) = &other {
            assert!(other.validate(&cid).is_err());
        }
    }
    let rest = input.rest();
    let tried = ConnectionId::new(&rest[..rest.len().min(20)]);
    let routed = tried.len() == CID_LEN && core_of_cid_byte(tried[0], cores) == core;
    assert_eq!(ours.validate(&tried).is_ok(), routed);
});
