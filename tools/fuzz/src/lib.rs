//! Helpers shared by the fuzz targets: reading choices out of the fuzzer's bytes.
//!
//! Targets take every decision (version, message kind, chunk sizes, which operation comes
//! next) from the input itself, so that libFuzzer's mutations steer them and a saved artifact
//! replays exactly.

use moq_relay::lite::Version;

/// The fuzzer's bytes, read from the front. Reads past the end give zeros or empty slices, so
/// a target never has to handle a short input specially.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.u8()))
    }

    /// A small count or index below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.u8()) % n.max(1)
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A length byte, then that many bytes.
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.take(n)
    }

    /// A 16-bit length, then that many bytes.
    pub fn long_chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.take(n)
    }

    /// A short string: a length byte, then its bytes, lossily UTF-8.
    pub fn string(&mut self) -> String {
        String::from_utf8_lossy(self.chunk()).into_owned()
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// A moq-lite version from one byte.
pub fn version(byte: u8) -> Version {
    Version::ALL[usize::from(byte) % Version::ALL.len()]
}

/// The byte that [`version`] maps to `v`.
pub fn version_byte(v: Version) -> u8 {
    Version::ALL.iter().position(|&x| x == v).unwrap_or(0) as u8
}

/// Splits `data` into chunks at points chosen by `cuts`: each cut byte is the length of the
/// next chunk (0 means 1); what is left after the cuts run out is one last chunk.
pub fn split<'a>(data: &'a [u8], cuts: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts {
        if at >= data.len() {
            break;
        }
        let end = (at + usize::from(c).max(1)).min(data.len());
        out.push(&data[at..end]);
        at = end;
    }
    if at < data.len() {
        out.push(&data[at..]);
    }
    out
}
