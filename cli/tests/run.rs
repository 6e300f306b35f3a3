//! `chaoslab run` as a user runs it: the real binary, short phases, the embedded fault proxies or
//! real toxiproxy-servers, the built-in client or one of the user's own, its exit status, its
//! reports, and Ctrl-C.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use chaoslab_testenv::{Managed, ScratchDir, ToxiproxyServer, free_port, loopback_ip, wait_for_port, workspace_bin};
use serde_json::Value;

fn chaoslab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chaoslab"))
}

fn run(args: &[&str]) -> Output {
    let out = chaoslab().arg("run").args(args).stdin(Stdio::null()).output().expect("run chaoslab");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

// Recovery is long enough for an avoided slow server (latency EWMA decaying from +500 ms) to be drawn again.
const SHORT: [&str; 8] = ["--stabilization", "4s", "--testing", "8s", "--recovery", "12s", "--concurrency", "16"];

fn report(dir: &Path, scenario: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(format!("{scenario}.json"))).expect("JSON report");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn multi_failure_packet_loss_passes_on_the_embedded_proxies() {
    let dir = ScratchDir::new("run-pl");
    let out =
        run(&[&["multi-failure-2-servers-packet-loss", "--report", dir.path().to_str().unwrap()], &SHORT[..]].concat());
    assert_eq!(out.status.code(), Some(0), "exit 0 only when the verdict is Passed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("verdict: Passed"), "{stdout}");
    let r = report(dir.path(), "multi-failure-2-servers-packet-loss");
    assert_eq!(r["status"]["verdict"], "Passed");
    assert_eq!(r["status"]["timeline"].as_array().unwrap().len(), 3);
    assert!(r["status"]["checks"].as_array().unwrap().len() >= 8);
    assert!(r["series"].as_array().unwrap().len() > 20, "a sampled time series");
    assert!(dir.join("multi-failure-2-servers-packet-loss.html").exists());
}

#[test]
fn multi_failure_latency_passes_on_the_embedded_proxies() {
    let out = run(&[&["multi-failure-2-servers-latency"], &SHORT[..]].concat());
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn both_multi_failure_scenarios_pass_on_real_toxiproxy_servers() {
    let servers: Vec<ToxiproxyServer> = (0..3).map(|_| ToxiproxyServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(ToxiproxyServer::url).collect();
    for scenario in ["multi-failure-2-servers-packet-loss", "multi-failure-2-servers-latency"] {
        let out = run(&[&[scenario, "--toxiproxy", &urls.join(","), "--backend", "redis-server"], &SHORT[..]].concat());
        assert_eq!(out.status.code(), Some(0), "{scenario}");
    }
    // The lab deleted the proxies it created.
    let rt = tokio::runtime::Runtime::new().unwrap();
    for url in &urls {
        let proxies = rt.block_on(chaoslab_toxiproxy::Client::new(url).unwrap().proxies()).unwrap();
        assert!(proxies.is_empty(), "left behind on {url}: {proxies:?}");
    }
}

#[test]
fn all_runs_fourteen_scenarios_and_reports_fourteen_verdicts() {
    let dir = ScratchDir::new("run-all");
    let out = run(&[
        "all",
        "--stabilization",
        "1s",
        "--testing",
        "1s",
        "--recovery",
        "1s",
        "--concurrency",
        "8",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "a verdict per scenario, not a crash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("  verdict: ").count(), 14, "{stdout}");
    for s in chaoslab_core::catalog::scenarios() {
        let r = report(dir.path(), s.name);
        assert!(r["status"]["verdict"].is_string(), "{}", s.name);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().skip_while(|l| *l != "summary:").skip(1).filter(|l| l.starts_with("  ")).count(), 14);
}

#[test]
fn usage_errors_exit_2_and_name_the_problem() {
    let out = run(&["no-such-scenario"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chaoslab list"));
    let out = run(&["all", "--testing", "0s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--testing"), "the flag is named");
    let out = run(&["all", "--toxiproxy", "http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2));
    for (args, named) in [
        (&["all", "--listen", "127.0.0.1:1,127.0.0.1:2"][..], "--listen"),
        (&["all", "--client-metrics", "127.0.0.1:9090/metrics"][..], "--client-metrics"),
        (&["all", "--client-metrics", "http://127.0.0.1:1/metrics", "--concurrency", "5"][..], "--concurrency"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(named), "{args:?}: {named} is named");
    }
}

#[test]
fn a_client_of_your_own_is_judged_through_its_metrics_url() {
    // The real chaoslab-loadgen stands in for the user's client: started on its own, pointed at the
    // addresses given with --listen, judged only through its /metrics.
    // Its own loopback address: the check that nothing listens at the end must not meet a listener
    // another test bound on 127.0.0.1:0 after the lab freed the port.
    let ip = loopback_ip();
    let listen: Vec<String> = (0..3).map(|_| format!("{ip}:{}", free_port())).collect();
    let metrics = format!("127.0.0.1:{}", free_port());
    let dir = ScratchDir::new("run-own");
    let lab = chaoslab()
        .args(["run", "multi-failure-2-servers-packet-loss", "--stabilization", "4s", "--testing", "8s"])
        .args(["--recovery", "12s", "--listen", &listen.join(",")])
        .args(["--client-metrics", &format!("http://{metrics}/metrics"), "--report", dir.path().to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for addr in &listen {
        assert!(wait_for_port(addr.parse().unwrap(), Duration::from_secs(20)), "no proxy listening on {addr}");
    }
    let mut client = Command::new(workspace_bin("chaoslab-loadgen"));
    client
        .args(["--targets", &listen.join(","), "--concurrency", "16", "--max-procs", "2", "--duration", "60s"])
        .args(["--metrics-addr", &metrics]);
    let _client = Managed::spawn("own-client", client);

    let out = lab.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("verdict: Passed"), "{stdout}");
    for (i, addr) in listen.iter().enumerate() {
        assert!(stderr.contains(&format!("server-{i}  {addr}")), "the addresses are printed: {stderr}");
    }
    let r = report(dir.path(), "multi-failure-2-servers-packet-loss");
    let last = r["series"].as_array().unwrap().last().unwrap();
    assert_eq!(last["servers"].as_array().unwrap().len(), 3, "the report's series come from the client's metrics");
    // The lab stopped: nothing listens on the proxy addresses any more.
    for addr in &listen {
        assert!(std::net::TcpStream::connect(addr).is_err(), "{addr} still listening");
    }
}

#[test]
fn ctrl_c_mid_testing_removes_toxics_stops_the_lab_and_writes_a_partial_report() {
    let servers: Vec<ToxiproxyServer> = (0..3).map(|_| ToxiproxyServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(ToxiproxyServer::url).collect();
    let dir = ScratchDir::new("run-int");
    let child = chaoslab()
        .args([
            "run",
            "multi-failure-2-servers-packet-loss",
            "--stabilization",
            "2s",
            "--testing",
            "60s",
            "--recovery",
            "60s",
        ])
        .args(["--concurrency", "8", "--toxiproxy", &urls.join(","), "--report", dir.path().to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = chaoslab_toxiproxy::Client::new(&urls[0]).unwrap();
    // Wait until Testing put its toxics on server-0.
    let start = Instant::now();
    loop {
        let toxics = rt.block_on(client.toxics("chaoslab-server-0")).unwrap_or_default();
        if !toxics.is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "Testing never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    for url in &urls {
        let proxies = rt.block_on(chaoslab_toxiproxy::Client::new(url).unwrap().proxies()).unwrap();
        assert!(proxies.is_empty(), "proxies (and their toxics) left on {url}: {proxies:?}");
    }
    let r = report(dir.path(), "multi-failure-2-servers-packet-loss");
    assert_eq!(r["status"]["phase"], "Aborted");
    assert_eq!(r["status"]["verdict"], "Inconclusive");
}

/// Width, height and byte size of a PNG file.
fn png_info(path: &Path) -> (u32, u32, usize) {
    let bytes = std::fs::read(path).expect("screenshot written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20), bytes.len())
}

#[test]
fn the_html_report_renders_its_charts_in_headless_chromium_offline() {
    let dir = ScratchDir::new("run-html");
    let out = run(&[
        "server-0-latency-500ms",
        "--stabilization",
        "2s",
        "--testing",
        "3s",
        "--recovery",
        "2s",
        "--concurrency",
        "8",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    assert!(matches!(out.status.code(), Some(0 | 1)));
    let page = dir.join("server-0-latency-500ms.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script") && !html.contains("src=\"http"), "self-contained");
    let chromium = |extra: &[&str]| {
        Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            // No network: every host resolves to nothing.
            .args(["--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=960,1400"])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("chromium is installed by hack/install-deps.sh")
    };
    let dom = chromium(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(dom.matches("<svg class=\"chart\"").count(), 4, "four charts in the rendered DOM");
    assert!(dom.matches("<polyline").count() >= 8, "series drawn");
    let shot = dir.join("report.png");
    let out = chromium(&[&format!("--screenshot={}", shot.display())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (w, h, size) = png_info(&shot);
    assert_eq!((w, h), (960, 1400));
    // A blank page of this size compresses to a few KB; four charts with shaded phases do not.
    assert!(size > 40_000, "screenshot is {size} bytes: the charts did not render");
}
