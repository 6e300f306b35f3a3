//! The images `hack/build-images.sh` writes, loaded the way `kind load image-archive` loads them
//! (a real containerd's `ctr images import`) and run by containerd with runc the way the chart
//! runs them: as user 65532 on a read-only root filesystem. The loadgen container drives a real
//! redis-server; the operator container reaches the real test apiserver and becomes ready.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use chaoslab_core::api::crd_yaml;
use chaoslab_testenv::{ControlPlane, Managed, RedisServer, ScratchDir, free_port, install_crd, repo_root};
use serde_json::Value;

const TAG: &str = env!("CARGO_PKG_VERSION");

/// Both archives, from the binaries this test run built (debug profile).
fn build_images(out: &Path) -> (PathBuf, PathBuf) {
    let o = Command::new("bash")
        .arg(repo_root().join("hack/build-images.sh"))
        .args(["--profile", "debug", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "build-images.sh: {}", String::from_utf8_lossy(&o.stderr));
    let paths: Vec<PathBuf> = String::from_utf8(o.stdout).unwrap().lines().map(PathBuf::from).collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    (paths[0].clone(), paths[1].clone())
}

fn tar_file(archive: &Path, member: &str) -> Vec<u8> {
    let o = Command::new("tar").arg("-xOf").arg(archive).arg(member).output().unwrap();
    assert!(o.status.success(), "{member} not in {}", archive.display());
    o.stdout
}

/// A real containerd with its own root and socket, stopped (with its containers) on drop.
struct Containerd {
    dir: PathBuf,
    started: Vec<String>,
    _daemon: Managed,
}

impl Containerd {
    fn start(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{d}/containerd.sock\"\n",
            d = dir.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(dir.join("config.toml"));
        let daemon = Managed::spawn("containerd", cmd);
        let me = Containerd { dir, started: Vec::new(), _daemon: daemon };
        let t0 = Instant::now();
        while !me.ctr(&["version"]).status.success() {
            assert!(t0.elapsed() < Duration::from_secs(20), "containerd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        me
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .arg("--namespace=k8s.io")
            .args(args)
            .output()
            .expect("ctr (hack/install-deps.sh installs containerd)")
    }

    /// What kind's `load image-archive` runs on its node.
    fn import(&self, archive: &Path) {
        let o = self.ctr(&[
            "images",
            "import",
            "--all-platforms",
            "--digests",
            "--snapshotter=native",
            archive.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "import {}: {}", archive.display(), String::from_utf8_lossy(&o.stderr));
    }

    fn log(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    fn log_of(&self, id: &str) -> String {
        std::fs::read_to_string(self.log(id)).unwrap_or_default()
    }

    /// Starts `image` detached as the chart would: the image's user, a read-only root, host network.
    fn run(&mut self, image: &str, id: &str, env: &[String], mounts: &[String], args: &[&str]) {
        let log = format!("--log-uri=file://{}", self.log(id).display());
        let mut a = vec!["run", "-d", "--snapshotter=native", "--net-host", "--read-only", &log];
        for e in env {
            a.extend(["--env", e]);
        }
        for m in mounts {
            a.extend(["--mount", m]);
        }
        a.extend([image, id]);
        a.extend(args);
        let o = self.ctr(&a);
        assert!(o.status.success(), "ctr run {image}: {}", String::from_utf8_lossy(&o.stderr));
        self.started.push(id.to_string());
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // runc's shims outlive containerd: stop the containers first.
        for id in &self.started {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
            let t0 = Instant::now();
            while !self.ctr(&["tasks", "delete", id]).status.success() && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.ctr(&["containers", "delete", id]);
        }
    }
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn wait_for(what: &str, timeout: Duration, log: impl Fn() -> String, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < timeout, "no {what} within {timeout:?}; its log:\n{}", log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn the_images_load_as_kind_loads_them_and_run_non_root_on_a_read_only_root() {
    let cp = ControlPlane::shared();
    let dir = ScratchDir::new("images");
    let (operator, loadgen) = build_images(&dir.join("out"));

    // What the chart's pods rely on: the entrypoint takes the chart's args, user 65532.
    for (archive, bin, repo) in
        [(&operator, "chaoslab-operator", "chaoslab/operator"), (&loadgen, "chaoslab-loadgen", "chaoslab/loadgen")]
    {
        let manifest: Value = serde_json::from_slice(&tar_file(archive, "manifest.json")).unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], format!("{repo}:{TAG}"));
        let config: Value =
            serde_json::from_slice(&tar_file(archive, manifest[0]["Config"].as_str().unwrap())).unwrap();
        assert_eq!(config["config"]["Entrypoint"][0], format!("/usr/local/bin/{bin}"));
        assert_eq!(config["config"]["User"], "65532:65532");
    }

    let mut containerd = Containerd::start(dir.join("containerd"));
    containerd.import(&operator);
    containerd.import(&loadgen);
    let listed = String::from_utf8(containerd.ctr(&["images", "ls", "-q"]).stdout).unwrap();
    for name in [format!("docker.io/chaoslab/operator:{TAG}"), format!("docker.io/chaoslab/loadgen:{TAG}")] {
        assert!(listed.lines().any(|l| l == name), "{name} not among the imported images:\n{listed}");
    }

    // The client under test, bounded, against a real redis-server.
    let redis = RedisServer::start();
    let lg_addr = format!("127.0.0.1:{}", free_port());
    let lg_bin = "/usr/local/bin/chaoslab-loadgen";
    containerd.run(
        &format!("docker.io/chaoslab/loadgen:{TAG}"),
        "loadgen",
        &[],
        &[],
        &[lg_bin, "--targets", &redis.addr(), "--concurrency", "4", "--duration", "30s", "--metrics-addr", &lg_addr],
    );
    wait_for(
        "loadgen successes on its /metrics",
        Duration::from_secs(20),
        || containerd.log_of("loadgen"),
        || {
            http_get(&lg_addr, "/metrics").is_some_and(|m| {
                m.lines().any(|l| {
                    l.starts_with("chaoslab_client_requests_total{")
                        && l.contains("outcome=\"success\"")
                        && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v > 0.0)
                })
            })
        },
    );

    // The operator, with the test apiserver's kubeconfig mounted, until it is ready (it has listed
    // ChaosScenarios through the real apiserver).
    install_crd(&cp.client().await, &crd_yaml()).await;
    // Readable by the container's user, as a mounted Secret would be.
    let kubeconfig = dir.join("kubeconfig");
    std::fs::copy(&cp.kubeconfig, &kubeconfig).unwrap();
    std::fs::set_permissions(&kubeconfig, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let op_addr = format!("127.0.0.1:{}", free_port());
    containerd.run(
        &format!("docker.io/chaoslab/operator:{TAG}"),
        "operator",
        &["KUBECONFIG=/etc/chaoslab/kubeconfig".to_string()],
        &[format!("type=bind,src={},dst=/etc/chaoslab/kubeconfig,options=rbind:ro", kubeconfig.display())],
        &["/usr/local/bin/chaoslab-operator", "run", "--metrics-addr", &op_addr],
    );
    wait_for(
        "operator /readyz 200",
        Duration::from_secs(30),
        || containerd.log_of("operator"),
        || {
            http_get(&op_addr, "/readyz")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"))
        },
    );
}
