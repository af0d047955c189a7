//! What the kernel says a process costs: CPU seconds from `/proc/PID/stat` and resident memory
//! from `/proc/PID/status`. Used to weigh a relay's work against what it delivered.

use std::time::Duration;

use serde::Serialize;

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// The fields of a `stat` file after the `(comm)` field, which may itself contain spaces.
fn stat_fields(stat: &str) -> Option<(String, Vec<&str>)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    Some((comm, stat.get(close + 1..)?.split_whitespace().collect()))
}

/// User plus system CPU time from a `stat` file's text.
fn stat_cpu(stat: &str) -> Option<Duration> {
    let (_, fields) = stat_fields(stat)?;
    // After the comm: state is field 3 of the man page, so utime (14) and stime (15) sit at 11
    // and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks();
    Some(Duration::from_micros((utime + stime) * 1_000_000 / ticks))
}

/// CPU time (user + system) the process `pid` has used so far.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time of the threads of `pid` whose name starts with `prefix`.
pub fn threads_cpu(pid: u32, prefix: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((comm, _)) = stat_fields(&stat) else {
            continue;
        };
        if comm.starts_with(prefix) {
            total += stat_cpu(&stat).unwrap_or_default();
        }
    }
    Some(total)
}

/// Resident memory now and at its peak, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub rss_kb: u64,
    /// `VmHWM`: the peak since the process started.
    pub hwm_kb: u64,
}

fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Memory {
        rss_kb: status_kb(&status, "VmRSS")?,
        hwm_kb: status_kb(&status, "VmHWM")?,
    })
}

/// CPU time the calling thread has used.
pub fn this_thread_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Names the calling thread (at most 15 bytes show), so that `top -H` and [`threads_cpu`]
/// can tell it apart.
pub fn name_this_thread(name: &str) {
    let mut bytes: Vec<u8> = name.bytes().filter(|&b| b != 0).take(15).collect();
    bytes.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, bytes.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

/// Samples a relay process over a run: CPU at start and end, RSS peak by polling.
#[derive(Debug)]
pub struct ProcessWatch {
    pub pid: u32,
    cpu_start: Duration,
    pub rss_start_kb: u64,
    pub rss_peak_kb: u64,
}

impl ProcessWatch {
    pub fn start(pid: u32) -> Result<Self, String> {
        let cpu_start = process_cpu(pid)
            .ok_or_else(|| format!("--relay-pid {pid}: no readable /proc/{pid}/stat"))?;
        let mem = memory(pid)
            .ok_or_else(|| format!("--relay-pid {pid}: no readable /proc/{pid}/status"))?;
        Ok(Self {
            pid,
            cpu_start,
            rss_start_kb: mem.rss_kb,
            rss_peak_kb: mem.rss_kb,
        })
    }

    /// Take an RSS sample; call it now and then during the run.
    pub fn sample(&mut self) {
        if let Some(m) = memory(self.pid) {
            self.rss_peak_kb = self.rss_peak_kb.max(m.rss_kb);
        }
    }

    /// CPU used since [`ProcessWatch::start`] and the memory now.
    pub fn finish(&mut self) -> Option<(Duration, Memory)> {
        self.sample();
        let cpu = process_cpu(self.pid)?.saturating_sub(self.cpu_start);
        Some((cpu, memory(self.pid)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_comm() {
        let ticks = clock_ticks();
        let stat = format!(
            "1234 (moq core 0) S 1 1234 1234 0 -1 4194560 100 0 0 0 {} {} 0 0 20 0 3 0 1 2 3",
            3 * ticks,
            ticks / 2
        );
        let (comm, _) = stat_fields(&stat).unwrap();
        assert_eq!(comm, "moq core 0");
        assert_eq!(stat_cpu(&stat).unwrap(), Duration::from_millis(3500));
    }

    #[test]
    fn status_lines() {
        let status = "Name:\tx\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kb(status, "VmRSS"), Some(10240));
        assert_eq!(status_kb(status, "VmHWM"), Some(20480));
        assert_eq!(status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_is_readable() {
        let pid = std::process::id();
        // Spin until the kernel has charged this thread some CPU; wall time alone says little
        // on a busy machine.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while this_thread_cpu() < Duration::from_millis(20) {
            assert!(std::time::Instant::now() < deadline);
            std::hint::black_box((0..1000u64).sum::<u64>());
        }
        assert!(process_cpu(pid).unwrap() >= Duration::from_millis(10));
        let m = memory(pid).unwrap();
        assert!(m.rss_kb > 0 && m.hwm_kb >= m.rss_kb);
        let mut w = ProcessWatch::start(pid).unwrap();
        w.sample();
        assert!(w.rss_peak_kb > 0);
        assert!(w.finish().is_some());
        assert!(
            ProcessWatch::start(u32::MAX)
                .unwrap_err()
                .contains("--relay-pid")
        );

        std::thread::Builder::new()
            .spawn(|| {
                name_this_thread("loadtest-spin");
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while threads_cpu(std::process::id(), "loadtest-spin").unwrap() == Duration::ZERO {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no CPU charged to the thread"
                    );
                    std::hint::black_box((0..1000u64).sum::<u64>());
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
