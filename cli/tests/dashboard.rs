//! The Grafana dashboard against the real tools: every PromQL expression parses with promtool, and
//! a real Prometheus that scraped a real short `chaoslab run` returns data for every panel's query.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use chaoslab_testenv::{Managed, ScratchDir, free_port, wait_for_port};
use serde_json::Value;

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/chaoslab.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("dashboards/chaoslab.json is JSON")
}

/// (panel title, expr) for every query, with Grafana's `$__rate_interval` given a value.
fn queries(d: &Value) -> Vec<(String, String)> {
    d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap().to_string();
            p["targets"].as_array().unwrap().iter().map(move |t| {
                (title.clone(), t["expr"].as_str().expect("every target has an expr").replace("$__rate_interval", "5s"))
            })
        })
        .collect()
}

/// `promtool check rules` on the expressions as recording rules: Ok, or promtool's complaint.
fn promtool_check(dir: &Path, exprs: &[String]) -> Result<(), String> {
    let mut rules = String::from("groups:\n- name: dashboard\n  rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        rules += &format!("  - record: chaoslab:dashboard:q{i}\n    expr: {}\n", serde_json::to_string(e).unwrap());
    }
    let file = dir.join("rules.yml");
    std::fs::write(&file, rules).unwrap();
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .expect("promtool (hack/install-deps.sh installs prometheus)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    }
}

#[test]
fn the_dashboard_has_the_panels_and_a_fixed_datasource() {
    let d = dashboard();
    let panels = d["panels"].as_array().unwrap();
    let first = &panels[0];
    assert_eq!((first["title"].as_str(), first["type"].as_str()), (Some("Scenario Phase"), Some("state-timeline")));
    assert_eq!(first["gridPos"]["y"], 0, "the phase panel is at the top");
    assert_eq!(first["targets"][0]["legendFormat"], "{{scenario}}", "scenario name in the legend");
    let colors = &first["fieldConfig"]["defaults"]["mappings"][0]["options"];
    for (value, text, color) in [("1", "Stabilization", "blue"), ("2", "Testing", "orange"), ("3", "Recovery", "green")]
    {
        assert_eq!((colors[value]["text"].as_str(), colors[value]["color"].as_str()), (Some(text), Some(color)));
    }
    let titles: Vec<&str> = panels.iter().map(|p| p["title"].as_str().unwrap()).collect();
    for want in
        ["Toxic state", "Circuit breaker", "Ops/s per server", "Error rate", "Pool connections", "Latency percentiles"]
    {
        assert!(titles.iter().any(|t| t.contains(want)), "no panel for {want}: {titles:?}");
    }
    for p in panels {
        assert_eq!(p["datasource"]["uid"], "chaoslab-prometheus", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "chaoslab-prometheus");
        }
    }
    assert!(!serde_json::to_string(&d).unwrap().contains("${DS_"), "provisioning never substitutes ${{DS_...}}");
}

#[test]
fn every_expression_parses_with_promtool() {
    let dir = ScratchDir::new("dash-promtool");
    let exprs: Vec<String> = queries(&dashboard()).into_iter().map(|(_, e)| e).collect();
    promtool_check(dir.path(), &exprs).expect("the dashboard's PromQL parses");
    // The check can fail: a broken expression is refused.
    assert!(promtool_check(dir.path(), &["sum by (server (rate(x[5s]))".to_string()]).is_err());
}

#[test]
fn every_panel_returns_data_from_a_real_prometheus_that_scraped_a_real_run() {
    let dir = ScratchDir::new("dash-prom");
    let (metrics_port, prom_port) = (free_port(), free_port());
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n- job_name: chaoslab\n  static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
    let prometheus = Managed::spawn("prometheus", cmd);
    assert!(
        wait_for_port(([127, 0, 0, 1], prom_port).into(), Duration::from_secs(20)),
        "prometheus:\n{}",
        prometheus.log_tail()
    );

    // Stabilization is long enough for Prometheus to find and scrape the new target before Testing.
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let out = Command::new(env!("CARGO_BIN_EXE_chaoslab"))
        .args([
            "run",
            "multi-failure-2-servers-packet-loss",
            "--stabilization",
            "8s",
            "--testing",
            "6s",
            "--recovery",
            "5s",
        ])
        .args(["--concurrency", "8", "--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.code().is_some(), "{}", String::from_utf8_lossy(&out.stderr));
    let end = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1;
    std::thread::sleep(Duration::from_secs(2));

    let rt = tokio::runtime::Runtime::new().unwrap();
    chaoslab_toxiproxy::install_crypto_provider();
    let query = |expr: &str| -> Value {
        let mut url = reqwest::Url::parse(&format!("http://127.0.0.1:{prom_port}/api/v1/query_range")).unwrap();
        url.query_pairs_mut()
            .append_pair("query", expr)
            .append_pair("start", &start.to_string())
            .append_pair("end", &end.to_string())
            .append_pair("step", "1");
        let text = rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() });
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"], "success", "{expr}: {text}");
        v["data"]["result"].clone()
    };
    let t0 = Instant::now();
    for (title, expr) in queries(&dashboard()) {
        let result = query(&expr);
        let series = result.as_array().unwrap();
        assert!(
            !series.is_empty() && series.iter().any(|s| !s["values"].as_array().unwrap().is_empty()),
            "panel {title:?} has no data for {expr}"
        );
    }
    // The phase panel shows the three phases in order.
    let phase = &queries(&dashboard())[0].1;
    let values: Vec<String> =
        query(phase)[0]["values"].as_array().unwrap().iter().map(|v| v[1].as_str().unwrap().to_string()).collect();
    let first =
        |x: &str| values.iter().position(|v| v == x).unwrap_or_else(|| panic!("phase {x} never seen: {values:?}"));
    assert!(first("1") < first("2") && first("2") < first("3"), "{values:?}");
    println!("{} dashboard queries answered in {:?}", queries(&dashboard()).len(), t0.elapsed());
}
