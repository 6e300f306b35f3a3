//! A child process that cannot outlive its handle or the test process.

use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

pub struct Managed {
    child: Child,
    pub log: PathBuf,
}

impl Managed {
    /// Starts `cmd` with output to a log file in the temp dir; the child gets SIGKILL if we die.
    pub fn spawn(name: &str, mut cmd: Command) -> Managed {
        let log = std::env::temp_dir().join(format!("chaoslab-{name}-{}.log", std::process::id()));
        let out = std::fs::File::create(&log).expect("create log file");
        cmd.stdin(Stdio::null()).stdout(out.try_clone().expect("dup log")).stderr(out);
        // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Managed { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for it to exit on its own: its status, or None if it still runs.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait().expect("try_wait on our own child") {
                Some(status) => return Some(status),
                None if Instant::now() >= deadline => return None,
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The log so far, for assertion messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Freezes the process (SIGSTOP), like a hung peer: its sockets stay open and nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; it is reaped only by `kill` below.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    /// Kills the process now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_for_exit_returns_the_status_or_none_while_it_runs() {
        let mut quick = Managed::spawn("wait-quick", {
            let mut c = Command::new("sleep");
            c.arg("0.1");
            c
        });
        assert!(quick.wait_for_exit(Duration::from_secs(10)).is_some_and(|s| s.success()));
        let mut slow = Managed::spawn("wait-slow", {
            let mut c = Command::new("sleep");
            c.arg("30");
            c
        });
        assert_eq!(slow.wait_for_exit(Duration::from_millis(200)), None);
    }
}
