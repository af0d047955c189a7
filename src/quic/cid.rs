//! Server connection IDs that name their core: `cid[0] mod cores == core`, the function the
//! router and the reuseport cBPF program use too.

use std::time::Duration;

use quinn_proto::{ConnectionId, ConnectionIdGenerator, InvalidCid};
use ring::rand::{SecureRandom, SystemRandom};

use crate::net::{CID_LEN, core_of_cid_byte};

pub struct CoreCid {
    core: usize,
    cores: usize,
    rng: SystemRandom,
}

impl CoreCid {
    pub fn new(core: usize, cores: usize) -> Self {
        assert!((1..=256).contains(&cores) && core < cores);
        Self {
            core,
            cores,
            rng: SystemRandom::new(),
        }
    }
}

/// Keep the random high part of `byte` and put `core` in its residue mod `cores`.
fn stamp(byte: u8, core: usize, cores: usize) -> u8 {
    let base = byte as usize - byte as usize % cores;
    let v = base + core;
    (if v > 255 { v - cores } else { v }) as u8
}

impl ConnectionIdGenerator for CoreCid {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut bytes = [0u8; CID_LEN];
        self.rng.fill(&mut bytes).expect("system randomness");
        bytes[0] = stamp(bytes[0], self.core, self.cores);
        ConnectionId::new(&bytes)
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        match cid.first() {
            Some(b) if cid.len() == CID_LEN && core_of_cid_byte(*b, self.cores) == self.core => {
                Ok(())
            }
            _ => Err(InvalidCid),
        }
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_stamps_to_its_core() {
        for cores in [1usize, 2, 3, 7, 64, 200, 256] {
            for core in 0..cores {
                for byte in 0..=255u8 {
                    let s = stamp(byte, core, cores);
                    assert_eq!(
                        core_of_cid_byte(s, cores),
                        core,
                        "cores {cores} core {core} byte {byte}"
                    );
                }
            }
        }
    }

    #[test]
    fn generated_cids_validate_on_their_core_only() {
        let mut g = CoreCid::new(1, 2);
        let other = CoreCid::new(0, 2);
        for _ in 0..100 {
            let cid = g.generate_cid();
            assert_eq!(cid.len(), CID_LEN);
            assert!(g.validate(&cid).is_ok());
            assert!(other.validate(&cid).is_err());
        }
    }
}
