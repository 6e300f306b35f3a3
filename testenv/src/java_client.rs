//! The real resilience4j client (fixtures/resilience4j-client): a JVM process that chaoslab judges
//! through its Micrometer metrics, as it would a user's Java service.

use std::{path::PathBuf, process::Command, sync::OnceLock};

use crate::control_plane::repo_root;

/// A command running the resilience4j client; add its flags (`--targets`, `--metrics-addr`, ...).
/// The launcher is `$RESILIENCE4J_CLIENT`, else the build of `hack/build-java-client.sh` (cached
/// outside the checkout by a hash of the sources, so only the first test of a change pays Maven).
pub fn resilience4j_client_command() -> Command {
    static LAUNCHER: OnceLock<PathBuf> = OnceLock::new();
    Command::new(LAUNCHER.get_or_init(|| {
        if let Some(p) = std::env::var_os("RESILIENCE4J_CLIENT") {
            return p.into();
        }
        let script = repo_root().join("hack/build-java-client.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("running bash {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "hack/build-java-client.sh failed ({}; needs JDK 17 and Maven, hack/install-deps.sh runs it):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("run")
    }))
}
