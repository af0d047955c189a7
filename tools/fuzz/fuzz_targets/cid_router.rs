//! `net::owner_of` and the connection-ID helpers on any datagram and any core count.
//!
//! Input: a 16-bit core count, then the datagram. The owner, when there is one, is a real
//! core and the one `core_of_cid_byte` names for the destination CID's first byte.

#![no_main]

use libfuzzer_sys::fuzz_target;
use moq_relay::net::{CID_LEN, core_of_cid_byte, owner_of};
use moq_relay_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let cores = usize::from(input.u16());
    let datagram = input.rest();
    for cores in [cores, cores % 8, usize::MAX] {
        let owner = owner_of(datagram, cores);
        if cores <= 1 {
            assert_eq!(owner, Some(0));
            continue;
        }
        let Some(core) = owner else { continue };
        assert!(core < cores, "{core} of {cores}");
        let first = datagram[0];
        let key = if first & 0x80 != 0 {
            assert!(datagram.len() > 6 && datagram[5] > 0);
            datagram[6]
        } else {
            assert!(datagram.len() > CID_LEN);
            datagram[1]
        };
        assert_eq!(core, core_of_cid_byte(key, cores));
    }
    for byte in [datagram.first().copied().unwrap_or(0), 0, 255] {
        assert!(core_of_cid_byte(byte, cores) < cores.max(1));
    }
});
