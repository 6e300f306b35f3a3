//! Where the real binaries are: installed by `hack/install-*.sh` into the cache outside the checkout.

use std::path::{Path, PathBuf};

/// The tool versions the install scripts build (`NAME=VERSION` lines), one file for both.
const VERSIONS: &str = include_str!("../../hack/versions.env");

/// `name`'s version in a versions.env text (a comment line never matches: its name starts with `#`).
fn version_in<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().filter_map(|l| l.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// A tool's version in `hack/versions.env`, e.g. `tool_version("TOXIPROXY_VERSION")`.
pub fn tool_version(name: &str) -> &'static str {
    version_in(VERSIONS, name).unwrap_or_else(|| panic!("hack/versions.env has no {name}"))
}

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

/// `$TOXIPROXY_SERVER`, or the cached build of `TOXIPROXY_VERSION`.
pub fn toxiproxy_server_bin() -> PathBuf {
    let p = std::env::var_os("TOXIPROXY_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join(format!("bin/toxiproxy-server-{}", tool_version("TOXIPROXY_VERSION"))));
    require(p, "hack/install-toxiproxy.sh")
}

/// `$REDIS_SERVER`, or Debian's redis-server.
pub fn redis_server_bin() -> PathBuf {
    let p = std::env::var_os("REDIS_SERVER").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/redis-server".into());
    require(p, "hack/install-deps.sh")
}

/// `$HELM`, or the cached build of `HELM_VERSION` (hack/testenv/install.sh).
pub fn helm_bin() -> PathBuf {
    let p = std::env::var_os("HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join(format!("bin/helm-v{}", tool_version("HELM_VERSION"))));
    require(p, "hack/testenv/install.sh")
}

/// `$PROMETHEUS`, or the cached build of `PROMETHEUS_VERSION` with Kubernetes service discovery
/// (hack/testenv/install.sh): the version the chart deploys.
pub fn prometheus_bin() -> PathBuf {
    let p = std::env::var_os("PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join(format!("bin/prometheus-v{}", tool_version("PROMETHEUS_VERSION"))));
    require(p, "hack/testenv/install.sh")
}

/// A binary of this workspace, next to the running test (`cargo test --workspace` builds them
/// all); built on demand when only one package's tests are run (`--workspace`: the test runs in
/// its own package's directory, where cargo would look only at that package's binaries).
pub fn workspace_bin(name: &str) -> PathBuf {
    // target/debug/deps/<test>-<hash> → target/debug
    let dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let bin = dir.join(name);
    if !bin.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let ok = std::process::Command::new(cargo)
            .args(["build", "-q", "--workspace", "--bin", name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "cargo build --bin {name}");
    }
    bin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_read_by_its_exact_name() {
        let text = "# HELM_VERSION=0.0.1\nKUBE_VERSION=1.36.3\nHELM_VERSION=3.22.0\n";
        assert_eq!(version_in(text, "HELM_VERSION"), Some("3.22.0"));
        assert_eq!(version_in(text, "KUBE"), None);
        assert_eq!(version_in(text, "ETCD_VERSION"), None);
    }

    #[test]
    fn versions_env_names_every_tool_the_tests_run() {
        for name in ["TOXIPROXY_VERSION", "HELM_VERSION", "PROMETHEUS_VERSION"] {
            let v = tool_version(name);
            assert!(!v.is_empty() && !v.starts_with('v') && !v.contains(char::is_whitespace), "{name}={v:?}");
        }
    }
}
