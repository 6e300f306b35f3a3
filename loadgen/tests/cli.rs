//! The binary: flags, the JSON summary, `serve`, and running until SIGTERM.

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use chaoslab_testenv::{free_port, wait_for_port};

const BIN: &str = env!("CARGO_BIN_EXE_chaoslab-loadgen");

/// `chaoslab-loadgen serve` on a free port; killed on drop.
struct Served(std::process::Child, String);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve() -> Served {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(BIN)
        .args(["serve", "--listen", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for_port(addr.parse().unwrap(), Duration::from_secs(10)), "serve did not listen");
    Served(child, addr)
}

#[test]
fn invalid_flags_name_the_flag() {
    for (args, flag) in [
        (&["--targets", "127.0.0.1:1", "--concurrency", "0"][..], "--concurrency"),
        (&["--targets", "127.0.0.1:1", "--duration", "ten"][..], "--duration"),
        (&["--targets", "127.0.0.1"][..], "--targets"),
        (&["--targets", "127.0.0.1:1", "--metrics-addr", "everywhere"][..], "--metrics-addr"),
        (&["--targets", "127.0.0.1:1,127.0.0.1:2", "--names", "a"][..], "--names"),
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn json_summary_over_the_builtin_server() {
    let servers = [serve(), serve(), serve()];
    let targets = servers.iter().map(|s| s.1.as_str()).collect::<Vec<_>>().join(",");
    let out = Command::new(BIN)
        .args(["--targets", &targets, "--requests", "3000", "--concurrency", "10", "--max-procs", "2"])
        .args(["--metrics-addr", "off", "--progress-interval", "0", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert!(v["ops_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(v["ops"], 3000);
    for k in ["p50", "p90", "p99", "max"] {
        assert!(v["latency_ms"][k].as_f64().unwrap() > 0.0, "{k}");
    }
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    for (i, s) in servers.iter().enumerate() {
        assert_eq!(s["name"], format!("server-{i}"));
        assert!(s["requests"].as_u64().unwrap() > 0 && s["successes"] == s["requests"], "{s}");
        assert_eq!((s["errors"].as_u64(), s["breaker_opens"].as_u64()), (Some(0), Some(0)));
    }
}

#[test]
fn runs_until_sigterm_with_progress_then_prints_its_summary() {
    let server = serve();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = Command::new(BIN)
        .args(["--targets", &server.1, "--concurrency", "4", "--max-procs", "1", "--progress-interval", "200ms"])
        .args(["--metrics-addr", &metrics.to_string(), "--names", "only"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    // Wait for two progress lines.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut progress = Vec::new();
    let mut line = String::new();
    while progress.len() < 2 && Instant::now() < deadline {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.contains("req/s") {
            progress.push(line.clone());
        }
    }
    assert_eq!(progress.len(), 2, "progress lines on stderr");
    assert!(progress[1].contains("only closed"), "{}", progress[1]);
    assert!(wait_for_port(metrics, Duration::from_secs(5)));
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert!(status.success(), "{status:?}");
    assert!(stdout.contains("ops:") && stdout.contains("only"), "{stdout}");
}

#[test]
fn a_busy_metrics_port_is_reported_before_any_load() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["--targets", "127.0.0.1:1", "--metrics-addr", &addr, "--duration", "5s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--metrics-addr") && !stderr.contains("unreachable"), "{stderr}");
}

/// The open model over the built-in server: its JSON summary and stderr.
fn open_run(rate: &str, concurrency: &str) -> (serde_json::Value, String) {
    let server = serve();
    let out = Command::new(BIN)
        .args(["--targets", &server.1, "--rate", rate, "--concurrency", concurrency, "--duration", "2s"])
        .args(["--max-procs", "1", "--metrics-addr", "off", "--progress-interval", "0", "--output", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).expect("JSON on stdout"), stderr)
}

#[test]
fn the_open_model_reports_its_schedule_and_says_when_it_falls_short_of_the_rate() {
    // Kept: every due send sent, latency from the schedule never below latency from the send.
    let (v, stderr) = open_run("500", "16");
    let s = &v["schedule"];
    assert!(s["achieved"].as_f64().unwrap() >= 0.99, "{s}");
    assert_eq!(s["missed"], 0);
    assert!(v["latency_ms"]["p50"].as_f64().unwrap() >= s["service_ms"]["p50"].as_f64().unwrap(), "{v}");
    assert!(v.get("warnings").is_none() && !stderr.contains("warning"), "{stderr}");
    // One in flight at a time cannot keep 20,000 sends a second (sends come due a millisecond's
    // worth at once): the shortfall is reported, in the summary and on stderr.
    let (v, stderr) = open_run("20000", "1");
    let s = &v["schedule"];
    assert!(s["achieved"].as_f64().unwrap() < 0.99 && s["missed"].as_u64().unwrap() > 0, "{s}");
    assert!(v["warnings"][0].as_str().unwrap().contains("raise --concurrency"), "{v}");
    assert!(stderr.contains("warning: sent"), "{stderr}");
}
