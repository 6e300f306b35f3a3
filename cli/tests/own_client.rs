//! `chaoslab run` judging clients no one here designed for: the real resilience4j client (a JVM,
//! Jedis, resilience4j 2.4.0, Micrometer's Prometheus registry) through its own metric names, and
//! three replicas of a client read as one, from their URLs or from a real Prometheus.

use std::{
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use chaoslab_testenv::{
    Managed, Prometheus, ScratchDir, free_port, loopback_ip, resilience4j_client_command, wait_for_port, workspace_bin,
};
use serde_json::Value;

const PHASES: [&str; 6] = ["--stabilization", "4s", "--testing", "8s", "--recovery", "20s"];
const LOSS: &str = "multi-failure-2-servers-packet-loss";
const LATENCY: &str = "multi-failure-2-servers-latency";

/// The lab on fixed proxy addresses, judging a client read with `client_flags`; returns the child
/// and the three addresses to point the client at.
fn lab(scenario: &str, report: &Path, client_flags: &[&str]) -> (Child, Vec<String>) {
    // Its own loopback address: nothing another test bound can answer on these ports.
    let ip = loopback_ip();
    let listen: Vec<String> = (0..3).map(|_| format!("{ip}:{}", free_port())).collect();
    let child = Command::new(env!("CARGO_BIN_EXE_chaoslab"))
        .args(["run", scenario, "--listen", &listen.join(","), "--report", report.to_str().unwrap()])
        .args(PHASES)
        .args(client_flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for addr in &listen {
        assert!(wait_for_port(addr.parse().unwrap(), Duration::from_secs(20)), "no proxy listening on {addr}");
    }
    (child, listen)
}

fn finish(lab: Child, clients: &[&Managed]) -> (Output, String) {
    let out = lab.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let logs: Vec<String> = clients.iter().map(|c| c.log_tail()).collect();
    println!("{stdout}\n{}\nclients:\n{}", String::from_utf8_lossy(&out.stderr), logs.join("\n"));
    (out, stdout)
}

fn checks(report: &Path, scenario: &str) -> Value {
    let text = std::fs::read_to_string(report.join(format!("{scenario}.json"))).expect("JSON report");
    serde_json::from_str::<Value>(&text).unwrap()
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["status"]["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or(&Value::Null)
}

/// The resilience4j client against the lab's proxies, its breakers named redis-a/b/c (so that the
/// lab needs --server-labels), `extra` flags added.
fn resilience4j(listen: &[String], metrics: &str, extra: &[&str]) -> Managed {
    let mut cmd = resilience4j_client_command();
    cmd.args(["--targets", &listen.join(","), "--names", "redis-a,redis-b,redis-c", "--metrics-addr", metrics])
        .args(["--concurrency", "4", "--duration", "90s"])
        .args(extra);
    Managed::spawn(&format!("resilience4j-client-{}", metrics.replace(':', "-")), cmd)
}

const R4J_LABELS: &str = "server-0=redis-a,server-1=redis-b,server-2=redis-c";

/// examples/client-mapping.yaml: the resilience4j preset written out as a custom mapping.
const MAPPING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/client-mapping.yaml");

#[test]
fn a_resilience4j_client_passes_both_multi_failure_scenarios() {
    // Once through the preset, once through the same mapping from a file (the README's example).
    for (scenario, mapping) in [(LATENCY, ["--client-preset", "resilience4j"]), (LOSS, ["--client-mapping", MAPPING])] {
        let dir = ScratchDir::new("own-r4j");
        let metrics = format!("{}:{}", loopback_ip(), free_port());
        let url = format!("http://{metrics}/metrics");
        let flags = [&["--client-metrics", &url, "--server-labels", R4J_LABELS][..], &mapping[..]].concat();
        let (lab, listen) = lab(scenario, dir.path(), &flags);
        let client = resilience4j(&listen, &metrics, &[]);
        let (out, stdout) = finish(lab, &[&client]);
        assert_eq!(out.status.code(), Some(0), "{scenario}: {stdout}");
        assert!(stdout.contains("verdict: Passed"), "{stdout}");
        let r = checks(dir.path(), scenario);
        // Judged on the servers by the lab's names, through --server-labels.
        let servers: Vec<&str> = r["status"]["observations"][1]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(servers, ["server-0", "server-1", "server-2"]);
        if scenario == LOSS {
            assert_eq!(check(&r, "faulted-breakers-open")["passed"], true);
            assert_eq!(check(&r, "faulted-breakers-heal")["passed"], true);
        }
    }
}

#[test]
fn the_same_client_with_breakers_that_never_trip_fails() {
    // METRICS_ONLY: every breaker records every call and never changes state, as a client whose
    // breakers are switched off by configuration. (DISABLED would record nothing at all.)
    let dir = ScratchDir::new("own-r4j-off");
    let metrics = format!("{}:{}", loopback_ip(), free_port());
    let url = format!("http://{metrics}/metrics");
    let flags = ["--client-metrics", &url, "--client-preset", "resilience4j", "--server-labels", R4J_LABELS];
    let (lab, listen) = lab(LOSS, dir.path(), &flags);
    let client = resilience4j(&listen, &metrics, &["--metrics-only"]);
    let (out, stdout) = finish(lab, &[&client]);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("verdict: Failed"), "{stdout}");
    let r = checks(dir.path(), LOSS);
    let opened = check(&r, "faulted-breakers-open");
    assert_eq!(opened["passed"], false, "{opened}");
    assert!(opened["observed"].as_str().unwrap().contains("server-0: never opened"), "{opened}");
}

/// Three chaoslab-loadgen replicas, each at a fixed rate (with room for the requests a dead server
/// holds until they time out, so that none is skipped), serving metrics at `addrs` (each on its own
/// loopback address, as pods have their own IPs).
fn replicas(name: &str, listen: &[String], addrs: &[String], rate: u32) -> Vec<Managed> {
    let spawn = |(i, addr): (usize, &String)| {
        let mut cmd = Command::new(workspace_bin("chaoslab-loadgen"));
        // Each replica sends a dead server a third of what one client would before routing around
        // it: its breakers decide on fewer calls (5, not 10), as a client scaled out is configured.
        cmd.args(["--targets", &listen.join(","), "--rate", &rate.to_string(), "--concurrency", "64"])
            .args(["--minimum-calls", "5"])
            .args(["--max-procs", "1", "--duration", "42s", "--output", "json", "--progress-interval", "0"])
            .args(["--metrics-addr", addr]);
        // Logs are named by process and name: tests running at once must not share one.
        Managed::spawn(&format!("{name}-replica-{i}"), cmd)
    };
    addrs.iter().enumerate().map(spawn).collect()
}

/// Requests per second the report's series saw during Recovery (all servers, all outcomes): by then
/// every replica has been read at least once (a replica's count starts at its first reading).
fn observed_rate(report: &Value) -> f64 {
    let series = report["series"].as_array().unwrap();
    let (mut requests, mut seconds) = (0.0, 0.0);
    for w in series.windows(2).filter(|w| w[0]["phase"] == "Recovery") {
        let dt = w[1]["t"].as_f64().unwrap() - w[0]["t"].as_f64().unwrap();
        let rate: f64 = w[1]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["ops"].as_f64().unwrap() + s["errors"].as_f64().unwrap() + s["rejected"].as_f64().unwrap())
            .sum();
        requests += rate * dt;
        seconds += dt;
    }
    requests / seconds
}

/// What a replica's JSON summary (its stdout, at exit) says it did per second.
fn summary_rate(replica: &mut Managed) -> f64 {
    let exited = replica.wait_for_exit(Duration::from_secs(20));
    assert!(exited.is_some_and(|s| s.success()), "{}", replica.log_tail());
    let text = std::fs::read_to_string(&replica.log).unwrap();
    let start = text.find("{\n").expect("a JSON summary");
    // The first value only: stderr shares the log, and a warning (e.g. below 99 % of --rate) can follow.
    let mut values = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
    let v = values.next().expect("a JSON summary").expect("the JSON summary parses");
    v["ops_per_sec"].as_f64().unwrap()
}

/// Runs the packet-loss scenario on three replicas serving at `addrs`, read as `client_flags` say:
/// Passed, and the rate the lab saw is the replicas' added up, within 2 %.
fn three_replicas_judged_as_one(name: &str, addrs: &[String], client_flags: &[&str]) {
    let dir = ScratchDir::new(name);
    let (lab, listen) = lab(LOSS, dir.path(), client_flags);
    let mut procs = replicas(name, &listen, addrs, 500);
    let (out, stdout) = finish(lab, &procs.iter().collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let sum: f64 = procs.iter_mut().map(summary_rate).sum();
    let seen = observed_rate(&checks(dir.path(), LOSS));
    println!("{name}: the lab saw {seen:.1} requests/s, the replicas sent {sum:.1}");
    assert!((seen / sum - 1.0).abs() <= 0.02, "the lab saw {seen:.1} requests/s, the replicas sent {sum:.1}");
}

fn addresses() -> Vec<String> {
    (0..3).map(|_| format!("{}:{}", loopback_ip(), free_port())).collect()
}

#[test]
fn three_replicas_read_from_their_urls_are_one_client() {
    let addrs = addresses();
    let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}/metrics")).collect();
    three_replicas_judged_as_one("own-3-urls", &addrs, &["--client-metrics", &urls.join(",")]);
}

#[test]
fn three_replicas_read_through_a_real_prometheus_are_one_client() {
    let addrs = addresses();
    let dir = ScratchDir::new("own-3-prom");
    let prometheus = Prometheus::scraping(dir.path(), "shop", &addrs);
    three_replicas_judged_as_one(
        "own-3-prom",
        &addrs,
        &["--client-prometheus", &prometheus.url, "--client-selector", "job=\"shop\""],
    );
}

fn run_fails(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chaoslab")).arg("run").args(args).stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("{stderr}");
    (out.status.code(), stderr)
}

#[test]
fn bad_client_flags_are_refused_naming_the_flag() {
    let url = "http://127.0.0.1:1/metrics";
    for (args, named) in [
        (&["--client-metrics", url, "--server-labels", "server-9=a"][..], "no server \"server-9\""),
        (&["--client-metrics", url, "--server-labels", "server-0"][..], "SERVER=LABEL"),
        (&["--client-metrics", url, "--client-mapping", "/nonexistent.yaml"][..], "--client-mapping"),
        (&["--client-metrics", url, "--client-preset", "hystrix"][..], "--client-preset"),
        (&["--client-prometheus", "localhost:9090"][..], "--client-prometheus"),
        (&["--client-selector", "job=\"x\""][..], "--client-prometheus"),
    ] {
        let (code, stderr) = run_fails(&[&[LOSS][..], args].concat());
        assert_eq!(code, Some(2), "{args:?}");
        assert!(stderr.contains(named), "{args:?}: {named} is named in {stderr}");
    }
    let dir = ScratchDir::new("own-bad-mapping");
    std::fs::write(dir.join("m.yaml"), "serverLabel: s\nrequests: [{metric: x, outcomeLable: o}]\n").unwrap();
    let (code, stderr) =
        run_fails(&[LOSS, "--client-metrics", url, "--client-mapping", dir.join("m.yaml").to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("outcomeLable"), "the unknown field is named: {stderr}");
    std::fs::write(dir.join("m.yaml"), "serverLabel: s\nrequests: [{metric: x}]\n").unwrap();
    let (code, stderr) =
        run_fails(&[LOSS, "--client-metrics", url, "--client-mapping", dir.join("m.yaml").to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("requests[0]: set outcomeLabel"), "{stderr}");
}

#[test]
fn a_client_that_cannot_be_read_is_told_why() {
    // Unreachable.
    let nobody = format!("http://127.0.0.1:{}/metrics", free_port());
    let (code, stderr) = run_fails(&[LOSS, "--client-metrics", &nobody, "--client-wait", "2s"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains(&format!("scraping {nobody}")), "{stderr}");
    // Answering, but with nothing the mapping reads: chaoslab's own loadgen read as resilience4j.
    let dir = ScratchDir::new("own-mismatch");
    let metrics = format!("{}:{}", loopback_ip(), free_port());
    let (lab, listen) = lab(
        LOSS,
        dir.path(),
        &[
            "--client-metrics",
            &format!("http://{metrics}/metrics"),
            "--client-preset",
            "resilience4j",
            "--client-wait",
            "4s",
        ],
    );
    let mut cmd = Command::new(workspace_bin("chaoslab-loadgen"));
    cmd.args(["--targets", &listen.join(","), "--rate", "100", "--duration", "20s", "--metrics-addr", &metrics]);
    let client = Managed::spawn("own-mismatch-client", cmd);
    let out = lab.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    drop(client);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("resilience4j_circuitbreaker_calls_seconds_count"), "what was looked for: {stderr}");
    assert!(stderr.contains("`name` label"), "{stderr}");
}
