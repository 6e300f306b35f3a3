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
        CP.get_or_init(ControlPlane::start)
    }

    fn start() -> ControlPlane {
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

fn read_env(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}
