//! Running a command to its end and measuring it: the peak resident set size the kernel recorded;
//! and the resident memory of a process still running.

use std::{
    io::Read,
    os::unix::process::ExitStatusExt,
    process::{Command, ExitStatus, Stdio},
};

/// How a measured command ended.
pub struct Measured {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The peak RSS in KiB: `ru_maxrss` from wait4, the process's VmHWM when it exited, so the exact
    /// peak rather than a sample of /proc.
    pub peak_rss_kib: u64,
}

/// The resident memory of process `pid` now, in KiB (VmRSS of /proc/<pid>/status); 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The peak resident memory of a running process: sampled on a thread of its own until dropped.
pub struct PeakRss {
    pid: u32,
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PeakRss {
    /// Starts sampling `pid` every `every`.
    pub fn watch(pid: u32, every: std::time::Duration) -> Self {
        use std::sync::{Arc, atomic::Ordering::Relaxed};
        let me = Self { pid, peak: Arc::default(), stop: Arc::default() };
        let (peak, stop) = (me.peak.clone(), me.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                peak.fetch_max(rss_kib(pid), Relaxed);
                std::thread::sleep(every);
            }
        });
        me
    }

    /// The highest RSS seen so far, now included, in KiB.
    pub fn kib(&self) -> u64 {
        let now = rss_kib(self.pid);
        self.peak.fetch_max(now, std::sync::atomic::Ordering::Relaxed).max(now)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs `cmd` to its end with stdout and stderr captured.
#[expect(clippy::zombie_processes, reason = "reaped by wait4, which std's Child::wait does not expose")]
pub fn run_measured(cmd: &mut Command) -> Measured {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // Read both pipes at once: a child blocked on a full one would never exit.
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let stderr = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let mut stdout = Vec::new();
    let _ = child.stdout.take().expect("piped stdout").read_to_end(&mut stdout);
    let (status, peak_rss_kib) = wait4(child.id());
    Measured { status, stdout, stderr: stderr.join().unwrap_or_default(), peak_rss_kib }
}

fn wait4(pid: u32) -> (ExitStatus, u64) {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child, not reaped yet; both pointers are to locals.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r == pid as libc::pid_t {
            return (ExitStatus::from_raw(status), usage.ru_maxrss.max(0) as u64);
        }
        let e = std::io::Error::last_os_error();
        assert!(e.kind() == std::io::ErrorKind::Interrupted, "wait4({pid}): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_output_status_and_a_peak_rss() {
        let m = run_measured(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]));
        assert_eq!((m.stdout.as_slice(), m.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
        assert_eq!(m.status.code(), Some(3));
        assert!(m.peak_rss_kib > 0, "a shell uses some memory");
    }
}
