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
