//! Which core owns a datagram, from its destination connection ID alone.
//!
//! The same function is used by the CID generator (which picks `cid[0]` so that it maps to the
//! issuing core), by this router (every datagram, Initials included) and by the reuseport cBPF
//! program, so that forwarding between cores is the rare exception.

/// Length of every server-issued connection ID. Short headers carry no length, so all cores must
/// agree on it.
pub const CID_LEN: usize = 8;

/// The core that owns connection IDs starting with `byte`.
#[inline]
pub fn core_of_cid_byte(byte: u8, cores: usize) -> usize {
    byte as usize % cores.max(1)
}

/// The core that should handle `datagram`, or `None` when it is too short or malformed to say
/// (the receiving core then handles it, and quinn-proto drops what it cannot parse).
#[inline]
pub fn owner_of(datagram: &[u8], cores: usize) -> Option<usize> {
    if cores <= 1 {
        return Some(0);
    }
    let first = *datagram.first()?;
    let key = if first & 0x80 != 0 {
        // Long header: flags(1) version(4) dcid_len(1) dcid.
        let len = *datagram.get(5)? as usize;
        if len == 0 {
            return None;
        }
        *datagram.get(6)?
    } else {
        // Short header: flags(1) dcid(CID_LEN).
        if datagram.len() < 1 + CID_LEN {
            return None;
        }
        datagram[1]
    };
    Some(core_of_cid_byte(key, cores))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_header_routes_by_first_cid_byte() {
        let mut d = vec![0x40u8; 30];
        d[1] = 7;
        assert_eq!(owner_of(&d, 2), Some(1));
        assert_eq!(owner_of(&d, 4), Some(3));
        d[1] = 8;
        assert_eq!(owner_of(&d, 4), Some(0));
        assert_eq!(owner_of(&d, 1), Some(0));
    }

    #[test]
    fn long_header_routes_by_dcid() {
        // Initial: 0xc0, version 1, dcid len 8, dcid 0x05...
        let mut d = vec![0xc0, 0, 0, 0, 1, 8, 5, 1, 2, 3, 4, 5, 6, 7, 0];
        assert_eq!(owner_of(&d, 2), Some(1));
        assert_eq!(owner_of(&d, 5), Some(0));
        d[5] = 0;
        assert_eq!(owner_of(&d, 2), None);
    }

    #[test]
    fn truncated_datagrams_have_no_owner() {
        for len in 0..9 {
            let d = vec![0x40u8; len];
            assert_eq!(owner_of(&d, 2), None, "len {len}");
        }
        assert_eq!(owner_of(&[0xc0, 0, 0, 0, 1, 8], 2), None);
    }
}
