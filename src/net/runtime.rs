//! One pinned monoio runtime per core: io_uring by default, epoll when io_uring is unavailable
//! (seccomp, old kernels, `kernel.io_uring_disabled`) or when asked for.

use std::fmt;
use std::io;
use std::str::FromStr;

/// Which monoio driver the cores run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoMode {
    /// io_uring when the kernel offers what monoio needs, else epoll.
    #[default]
    Auto,
    /// io_uring or fail.
    Uring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

#[derive(Debug)]
pub struct ParseIoModeError(String);

impl fmt::Display for ParseIoModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown io mode `{}` (expected uring, epoll or auto)",
            self.0
        )
    }
}

impl std::error::Error for ParseIoModeError {}

impl FromStr for IoMode {
    type Err = ParseIoModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(Self::Uring),
            "epoll" | "legacy" => Ok(Self::Epoll),
            other => Err(ParseIoModeError(other.to_string())),
        }
    }
}

impl fmt::Display for IoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Uring => "uring",
            Self::Epoll => "epoll",
        })
    }
}

/// Whether the kernel lets monoio use io_uring here.
pub fn io_uring_available() -> bool {
    monoio::utils::detect_uring()
}

const RING_ENTRIES: u32 = 1024;

/// Pin the calling thread to `cpu` (when given) and run `make()` to completion on a fresh
/// runtime of the chosen kind. Returns whether io_uring was used, with the future's output.
pub fn run_pinned<F, Fut>(
    cpu: Option<usize>,
    mode: IoMode,
    make: F,
) -> io::Result<(bool, Fut::Output)>
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    if let Some(cpu) = cpu {
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        if let Some(id) = ids.get(cpu % ids.len().max(1))
            && !core_affinity::set_for_current(*id)
        {
            tracing::warn!(cpu, "could not pin thread");
        }
    }
    let uring = match mode {
        IoMode::Epoll => false,
        IoMode::Auto => io_uring_available(),
        IoMode::Uring if io_uring_available() => true,
        IoMode::Uring => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring is unavailable on this kernel (try --io epoll or --io auto)",
            ));
        }
    };
    if uring {
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(RING_ENTRIES)
            .enable_timer()
            .build()?;
        Ok((true, rt.block_on(make())))
    } else {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .with_entries(RING_ENTRIES)
            .enable_timer()
            .build()?;
        Ok((false, rt.block_on(make())))
    }
}
