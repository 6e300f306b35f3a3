//! The README's Kubernetes quick start, command for command, on a real node (`up.sh --node`:
//! containerd + runc, a kubelet, CNI, kube-proxy, CoreDNS): every pod of `charts/chaoslab` runs
//! in a real container from the images built here. Only `kind create cluster` and
//! `kind load image-archive` are replaced, by the node and by containerd's import (what kind's
//! load runs on its node). Grafana is off: it cannot be built here (its module is refused).

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use chaoslab_testenv::{ControlPlane, ScratchDir, free_port, helm_bin, repo_root};
use serde_json::Value;

const NS: &str = "chaoslab";

/// Runs `program args` in the repository with the node's kubeconfig; panics with its output if
/// it fails.
fn run(cp: &ControlPlane, program: &str, args: &[&str]) -> String {
    let o = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "`{program} {}` failed:\n{out}\n{err}", args.join(" "));
    out.into_owned()
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let (ok, out, err) = cp.kubectl(args, None);
    assert!(ok, "`kubectl {}` failed:\n{out}\n{err}", args.join(" "));
    out
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// On a failure, prints what a user would look at: pods, the ones not Ready described with their
/// logs, the kubelet's log tail.
struct Diagnostics<'a>(&'a ControlPlane);

impl Drop for Diagnostics<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let cp = self.0;
        let show = |args: &[&str]| {
            let (_, out, err) = cp.kubectl(args, None);
            eprintln!("$ kubectl {}\n{out}{err}", args.join(" "));
        };
        show(&["get", "pods", "-A", "-o", "wide"]);
        show(&["-n", NS, "get", "chaos", "-o", "yaml"]);
        let (_, pods, _) = cp.kubectl(&["get", "pods", "-A", "-o", "json"], None);
        for pod in
            serde_json::from_str::<Value>(&pods).ok().and_then(|v| v["items"].as_array().cloned()).unwrap_or_default()
        {
            let ready = pod["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            let (ns, name) =
                (pod["metadata"]["namespace"].as_str().unwrap_or(""), pod["metadata"]["name"].as_str().unwrap_or(""));
            if !ready {
                show(&["-n", ns, "describe", "pod", name]);
                show(&["-n", ns, "logs", name, "--all-containers", "--tail=50"]);
            }
        }
        let kubelet = std::fs::read_to_string(cp.dir.join("kubelet.log")).unwrap_or_default();
        let tail: Vec<&str> = kubelet.lines().rev().take(60).collect();
        eprintln!("kubelet log tail:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
}

/// `kubectl port-forward`, as the README has it; stopped on drop.
struct PortForward(Child);

impl PortForward {
    fn start(cp: &ControlPlane, target: &str, remote: u16) -> (Self, u16) {
        let port = free_port();
        let child = Command::new("kubectl")
            .args(["-n", NS, "port-forward", target, &format!("{port}:{remote}")])
            .env("KUBECONFIG", &cp.kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl port-forward");
        (PortForward(child), port)
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(url: &str) -> Option<String> {
    let o = Command::new("curl").args(["-fsS", "--max-time", "5", url]).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Retries `f` every second for up to `limit`.
fn within<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let t0 = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if t0.elapsed() > limit => panic!("{what} not within {limit:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// The chaoslab images as the README builds them, loaded the way `kind load image-archive` loads
/// them (debug profile: the binaries this test run built; the README's release build differs only
/// in optimisation).
fn load_chaoslab_images(cp: &ControlPlane) {
    let out = run(cp, "bash", &["hack/build-images.sh", "--profile", "debug"]);
    let sock = cp.dir.join("node/containerd/containerd.sock");
    for archive in out.lines() {
        run(
            cp,
            "ctr",
            &[
                "--address",
                sock.to_str().unwrap(),
                "-n",
                "k8s.io",
                "images",
                "import",
                "--all-platforms",
                "--digests",
                archive,
            ],
        );
    }
}

fn toxics_on(pod_ip: &str) -> Vec<Value> {
    let proxies = json(&http_get(&format!("http://{pod_ip}:8474/proxies")).expect("Toxiproxy admin answers"));
    proxies
        .as_object()
        .expect("proxies")
        .values()
        .flat_map(|p| p["toxics"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The `data.result` series of a Prometheus API call (`query?…` or `query_range?…`) on the
/// port-forwarded `port`.
fn prometheus(port: u16, call: &str) -> Result<Vec<Value>, String> {
    let body =
        json(&http_get(&format!("http://127.0.0.1:{port}/api/v1/{call}")).ok_or("Prometheus did not answer (yet)")?);
    Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// When each phase of the scenario was first reported current (`chaoslab_scenario_phase == 1`),
/// read from Prometheus over the run.
fn phases_seen(port: u16, since: u64) -> Result<Vec<(String, f64)>, String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let call = format!(
        "query_range?query=chaoslab_scenario_phase%7Bscenario%3D%22chaoslab%2Fmulti-failure%22%7D%3D%3D1&start={since}&end={now}&step=5"
    );
    let mut seen: Vec<(String, f64)> = prometheus(port, &call)?
        .iter()
        .map(|s| {
            let first = s["values"][0][0].as_f64().unwrap_or(f64::MAX);
            (s["metric"]["phase"].as_str().unwrap_or("").to_string(), first)
        })
        .collect();
    seen.sort_by(|a, b| a.1.total_cmp(&b.1));
    Ok(seen)
}

/// The README's quick-start block (under "On Kubernetes"), one command a line, comments dropped.
fn readme_quick_start() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let section = readme.split("## On Kubernetes").nth(1).expect("README has an \"On Kubernetes\" section");
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("a sh block");
    let command = |l: &str| l.split("  #").next().unwrap_or("").trim().to_string();
    block.lines().map(command).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

/// What the test runs for a README line: kind's steps are the node and the import, the watch
/// never ends, Grafana is off (it cannot be built here); `helm install` gets `grafana.enabled=false`.
fn as_run(line: &str) -> Option<String> {
    let skipped = [
        "kind ",
        "bash hack/build-images.sh",
        "kubectl -n chaoslab get chaos -w",
        "kubectl -n chaoslab port-forward svc/chaoslab-grafana",
    ];
    if skipped.iter().any(|s| line.starts_with(s)) {
        return None;
    }
    Some(if line.starts_with("helm install ") {
        format!("{line} --set grafana.enabled=false")
    } else {
        line.to_string()
    })
}

/// A directory with `helm` in it (the cached build), for PATH.
fn helm_on_path() -> ScratchDir {
    let bin = ScratchDir::new("quickstart-bin");
    std::os::unix::fs::symlink(helm_bin(), bin.join("helm")).unwrap();
    bin
}

/// Runs a README line with `bash -c` as a user's shell would, `bin` first on PATH; bounded.
fn shell(cp: &ControlPlane, bin: &Path, line: &str) -> String {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    eprintln!("$ {line}");
    let o = Command::new("timeout")
        .args(["330", "bash", "-c", line])
        .current_dir(repo_root())
        .env("KUBECONFIG", &cp.kubeconfig)
        .env("PATH", path)
        .output()
        .expect("bash");
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "`{line}` failed ({}):\n{out}\n{err}", o.status);
    out.into_owned()
}

/// What the machine has that a node could leave behind: links, network namespaces, nftables
/// tables, mounts and processes naming `dir`, routes into the test range.
fn machine_state(dir: &Path) -> Vec<String> {
    let out = |program: &str, args: &[&str]| {
        let o = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let dir = dir.to_string_lossy().into_owned();
    let mut state: Vec<String> = out("ip", &["-o", "link"])
        .lines()
        .map(|l| format!("link {}", l.split(':').nth(1).unwrap_or("").trim()))
        .collect();
    state.extend(out("ip", &["netns", "list"]).lines().map(|l| format!("netns {l}")));
    state.extend(out("nft", &["list", "tables"]).lines().map(String::from));
    state.extend(
        out("ip", &["route", "show", "all"]).lines().filter(|l| l.contains("198.1")).map(|l| format!("route {l}")),
    );
    state.extend(
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&dir))
            .map(|l| format!("mount {l}")),
    );
    // (The control plane's watchdog names it too: it runs down.sh when this test binary exits.)
    let ours = |l: &&str| !l.contains("while kill -0");
    state.extend(out("pgrep", &["-af", &dir]).lines().filter(ours).map(|l| format!("process {l}")));
    state.sort();
    state
}

#[test]
fn the_readme_quick_start_runs_on_a_real_node() {
    let t0 = Instant::now();
    let before = machine_state(&std::env::temp_dir().join(format!("chaoslab-cp-{}", std::process::id())));
    let cp = ControlPlane::with_node();
    eprintln!("node up in {:?}", cp.startup);
    let _diagnostics = Diagnostics(cp);
    load_chaoslab_images(cp);
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();

    let lines = readme_quick_start();
    assert!(lines.iter().any(|l| l.starts_with("helm install ")), "{lines:#?}");
    let (bin, mut printed) = (helm_on_path(), String::new());
    for line in lines.iter().filter_map(|l| as_run(l)) {
        printed = shell(cp, bin.path(), &line);
        if line.contains("apply -f examples/multi-failure.yaml") {
            // Not a README step: every Deployment of the chart Available (real probes) first.
            kubectl(cp, &["-n", NS, "wait", "--for=condition=Available", "deployment", "--all", "--timeout=5m"]);
            eprintln!("chart running at {:?}", t0.elapsed());
        }
    }
    eprintln!("scenario completed at {:?}; the README's last command printed:\n{printed}", t0.elapsed());
    // That last command lists the checks: each one passed.
    assert!(printed.lines().count() >= 5 && printed.lines().all(|l| l.contains(": passed=true - ")), "{printed}");

    let chaos = json(&kubectl(cp, &["-n", NS, "get", "chaos", "multi-failure", "-o", "json"]));
    let status = &chaos["status"];
    assert_eq!(status["verdict"], "Passed", "{status:#}");
    let checks = status["checks"].as_array().expect("checks");
    assert!(!checks.is_empty() && checks.iter().all(|c| c["passed"] == true), "{checks:#?}");
    // No toxic left on any sidecar (the node reaches pod addresses over its bridge).
    let pods =
        json(&kubectl(cp, &["-n", NS, "get", "pods", "-l", "app.kubernetes.io/component=backend", "-o", "json"]));
    let ips: Vec<String> =
        pods["items"].as_array().unwrap().iter().map(|p| p["status"]["podIP"].as_str().unwrap().to_string()).collect();
    assert_eq!(ips.len(), 3, "{ips:?}");
    for ip in &ips {
        assert!(ip.starts_with("198.18.1."), "pod address {ip} outside the node's pod range");
        assert_eq!(toxics_on(ip), Vec::<Value>::new(), "toxics left on {ip}");
    }

    // Prometheus, reached as the README reaches Grafana: the phases in order, all three servers.
    let (_pf, port) = PortForward::start(cp, "svc/chaoslab-prometheus-server", 80);
    let phases = within("the three phases in Prometheus", Duration::from_secs(30), || {
        let seen = phases_seen(port, since)?;
        let names: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        let wanted = ["Stabilization", "Testing", "Recovery"];
        let order: Vec<&str> = names.iter().copied().filter(|p| wanted.contains(p)).collect();
        if order == wanted { Ok(seen) } else { Err(format!("{seen:?}")) }
    });
    eprintln!("phases first seen current: {phases:?}");
    let servers = within("client series of three servers", Duration::from_secs(30), || {
        let series = prometheus(port, "query?query=count%20by%20(server)%20(chaoslab_client_requests_total)")?;
        if series.len() >= 3 { Ok(series) } else { Err(format!("{series:?}")) }
    });
    eprintln!("client series: {}", Value::Array(servers));
    // Where the operator's reconciles spent their time, per kind of call, for a user to see.
    let calls = within("the operator's call timings", Duration::from_secs(30), || {
        let series =
            prometheus(port, "query?query=sum%20by%20(call)%20(chaoslab_operator_call_duration_seconds_count)")?;
        let count = |s: &Value| s["value"][1].as_str().unwrap_or("0").parse().unwrap_or(0.0);
        let counted: Vec<(String, f64)> =
            series.iter().map(|s| (s["metric"]["call"].as_str().unwrap_or("").to_string(), count(s))).collect();
        let all = ["resolve_targets", "toxiproxy_converge", "status_patch", "event", "metadata_patch"];
        let seen = |c: &str| counted.iter().any(|(n, v)| n == c && *v > 0.0);
        if all.iter().all(|c| seen(c)) { Ok(counted) } else { Err(format!("{counted:?}")) }
    });
    eprintln!("operator calls timed: {calls:?}");

    // helm uninstall: no pod left, the CRD stays.
    run(cp, &helm_bin().to_string_lossy(), &["uninstall", "chaoslab", "--namespace", NS, "--wait"]);
    within("every chart pod gone", Duration::from_secs(120), || {
        let left = kubectl(cp, &["-n", NS, "get", "pods", "-o", "name"]);
        if left.trim().is_empty() { Ok(()) } else { Err(left) }
    });
    kubectl(cp, &["get", "crd", "chaosscenarios.chaoslab.dev"]);
    // The test range stays unreachable from the machine's own interface while the node runs.
    let routes =
        String::from_utf8(Command::new("ip").args(["route", "show", "type", "unreachable"]).output().unwrap().stdout)
            .unwrap();
    assert!(routes.contains("198.18.0.0/15"), "{routes}");
    eprintln!("quick start done in {:?}", t0.elapsed());

    // down.sh, twice: the machine is as it was before the node.
    for _ in 0..2 {
        run(cp, "bash", &["hack/testenv/down.sh", cp.dir.to_str().unwrap()]);
    }
    assert_eq!(machine_state(&cp.dir), before, "left behind by the node");
    assert!(!cp.dir.exists(), "{} left", cp.dir.display());
}
