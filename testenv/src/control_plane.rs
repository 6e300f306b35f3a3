//! A real kube-apiserver + etcd for tests, one per test binary, started by `hack/testenv/up.sh`
//! on free loopback ports. A watchdog process runs `down.sh` as soon as the test binary exits —
//! normally, after a panic, or killed — so nothing is left running or on disk.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::Instant,
};

use kube::config::{KubeConfigOptions, Kubeconfig};

pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub url: String,
    /// How long `up.sh` took in this process.
    pub startup: std::time::Duration,
}

/// The workspace's root directory (where `hack/`, `charts/` and the crates are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testenv lives in the workspace").to_path_buf()
}

impl ControlPlane {
    /// The control plane of this test binary, started on first use.
    pub fn shared() -> &'static ControlPlane {
        static CP: OnceLock<ControlPlane> = OnceLock::new();
        CP.get_or_init(|| ControlPlane::start(&[]))
    }

    /// This test binary's control plane with a real node (`up.sh --node`: containerd, kubelet,
    /// CNI, kube-proxy, CoreDNS), started on first use; needs root and `install.sh --node`.
    pub fn with_node() -> &'static ControlPlane {
        static CP: OnceLock<ControlPlane> = OnceLock::new();
        CP.get_or_init(|| ControlPlane::start(&["--node"]))
    }

    fn start(up_args: &[&str]) -> ControlPlane {
        let dir = std::env::temp_dir().join(format!("chaoslab-cp-{}", std::process::id()));
        let scripts = repo_root().join("hack/testenv");
        // Watchdog first: whatever happens next, the control plane goes when this process does.
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; exec bash {down} {dir} >/dev/null 2>&1",
            pid = std::process::id(),
            down = scripts.join("down.sh").display(),
            dir = dir.display()
        );
        // Never waited on: it must outlive this process.
        #[allow(clippy::zombie_processes)]
        Command::new("setsid")
            .args(["sh", "-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the control-plane watchdog");

        let t0 = Instant::now();
        let out = Command::new("bash")
            .arg(scripts.join("up.sh"))
            .args(up_args)
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("run hack/testenv/up.sh");
        assert!(
            out.status.success(),
            "hack/testenv/up.sh failed (run hack/testenv/install.sh first?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = read_env(&dir.join("env"));
        ControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            url: env.get("APISERVER_URL").cloned().expect("env has APISERVER_URL"),
            dir,
            startup: t0.elapsed(),
        }
    }

    /// Kills etcd and kube-apiserver (SIGKILL, as in a crash) and starts them again with the same
    /// command lines: the same ports, certificates and etcd data, so every object is still there.
    /// Returns once the apiserver answers `/readyz` again, with how long that took.
    pub fn restart(&self) -> std::time::Duration {
        let t0 = Instant::now();
        let parts = [("apiserver", "apiserver.log"), ("etcd", "etcd.log")];
        let commands: Vec<Vec<String>> = parts.iter().map(|(name, _)| self.kill(name)).collect();
        for ((name, log), argv) in parts.iter().zip(commands).rev() {
            let pid = start_detached(&argv, &self.dir.join(log));
            std::fs::write(self.dir.join(format!("{name}.pid")), format!("{pid}\n")).expect("write pid file");
            if *name == "etcd" {
                self.wait_until(&[format!("http://127.0.0.1:{}/health", self.env("ETCD_PORT"))]);
            }
        }
        let readyz = format!("{}/readyz", self.url);
        let auth = format!("Authorization: Bearer {}", self.env("TOKEN"));
        self.wait_until(&["--cacert".into(), self.env("APISERVER_CA_FILE"), "-H".into(), auth, readyz]);
        t0.elapsed()
    }

    fn env(&self, key: &str) -> String {
        read_env(&self.dir.join("env")).remove(key).unwrap_or_else(|| panic!("{key} in the control plane's env"))
    }

    /// SIGKILLs the process of `DIR/<name>.pid` and returns its command line.
    fn kill(&self, name: &str) -> Vec<String> {
        let pid = std::fs::read_to_string(self.dir.join(format!("{name}.pid"))).expect("pid file");
        let pid: i32 = pid.trim().parse().expect("a pid");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("a running process");
        let argv = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty());
        let argv: Vec<String> = argv.map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        // SAFETY: kill(2) on a pid read from our own control plane's pid file, its command line just read.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // Gone, or a zombie (an empty command line): its ports are free.
        let gone = || std::fs::read(format!("/proc/{pid}/cmdline")).map_or(true, |c| c.is_empty());
        for _ in 0..500 {
            if gone() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        argv
    }

    /// Waits up to 60 s for `curl -fsS ARGS` to succeed.
    fn wait_until(&self, args: &[String]) {
        for _ in 0..240 {
            let ok = Command::new("curl").args(["-fsS", "--max-time", "2"]).args(args).output();
            if ok.is_ok_and(|o| o.status.success()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        panic!("not ready 60 s after a restart: curl {args:?}");
    }

    /// An admin client.
    pub async fn client(&self) -> kube::Client {
        let kc = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kubeconfig");
        kube::Client::try_from(config).expect("kube client")
    }

    /// `kubectl --kubeconfig ... ARGS`, returning (success, stdout, stderr).
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        use std::io::Write;
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl on PATH");
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(stdin.unwrap_or("").as_bytes()).expect("write kubectl stdin");
        drop(pipe);
        let out = child.wait_with_output().expect("kubectl");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }
}

/// Starts `argv` in its own session, detached from this process (as up.sh does: it outlives the test
/// binary until the watchdog's down.sh stops it), appending its output to `log`; returns its pid.
fn start_detached(argv: &[String], log: &Path) -> u32 {
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"log="$1"; shift; setsid "$@" </dev/null >>"$log" 2>&1 & echo $!"#)
        .arg("sh")
        .arg(log)
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .expect("sh");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("cannot start {argv:?}"))
}

fn read_env(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}
