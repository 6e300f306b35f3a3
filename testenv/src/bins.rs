//! Where the real binaries are: installed by `hack/install-*.sh` into the cache outside the checkout.

use std::path::{Path, PathBuf};

pub const TOXIPROXY_VERSION: &str = "2.12.0";

/// `$CHAOSLAB_CACHE`, default `~/.cache/chaoslab`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("CHAOSLAB_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| "/tmp".into());
        home.join(".cache/chaoslab")
    })
}

fn require(path: PathBuf, install: &str) -> PathBuf {
    assert!(
        is_executable(&path),
        "{} is missing: run `{install}` (the test command `hack/test.sh` does)",
        path.display()
    );
    path
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// `$TOXIPROXY_SERVER`, or the cached v2.12.0 build.
pub fn toxiproxy_server_bin() -> PathBuf {
    let p = std::env::var_os("TOXIPROXY_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join(format!("bin/toxiproxy-server-{TOXIPROXY_VERSION}")));
    require(p, "hack/install-toxiproxy.sh")
}

/// `$REDIS_SERVER`, or Debian's redis-server.
pub fn redis_server_bin() -> PathBuf {
    let p = std::env::var_os("REDIS_SERVER").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/redis-server".into());
    require(p, "hack/install-deps.sh")
}

/// `$HELM`, or the cached v3.22.0 build (hack/testenv/install.sh).
pub fn helm_bin() -> PathBuf {
    let p = std::env::var_os("HELM").map(PathBuf::from).unwrap_or_else(|| cache_dir().join("bin/helm-v3.22.0"));
    require(p, "hack/testenv/install.sh")
}

/// `$PROMETHEUS`, or the cached v3.14.0 build with Kubernetes service discovery
/// (hack/testenv/install.sh): the version the chart deploys.
pub fn prometheus_bin() -> PathBuf {
    let p =
        std::env::var_os("PROMETHEUS").map(PathBuf::from).unwrap_or_else(|| cache_dir().join("bin/prometheus-v3.14.0"));
    require(p, "hack/testenv/install.sh")
}

/// A binary of this workspace, next to the running test (`cargo test --workspace` builds them
/// all); built on demand when only one package's tests are run.
pub fn workspace_bin(name: &str) -> PathBuf {
    // target/debug/deps/<test>-<hash> → target/debug
    let dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let bin = dir.join(name);
    if !bin.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let ok = std::process::Command::new(cargo).args(["build", "-q", "--bin", name]).status().unwrap().success();
        assert!(ok, "cargo build --bin {name}");
    }
    bin
}
