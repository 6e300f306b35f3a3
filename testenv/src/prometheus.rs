//! A real Prometheus scraping fixed targets every second, for tests that read a client through it.

use std::{path::Path, process::Command, time::Duration};

use crate::{Managed, free_port, prometheus_bin, wait_for_port};

pub struct Prometheus {
    pub process: Managed,
    /// Its base URL, e.g. http://127.0.0.1:9090.
    pub url: String,
}

impl Prometheus {
    /// Scrapes `targets` (host:port, path /metrics) as job `job` every second; its data in `dir`.
    pub fn scraping(dir: &Path, job: &str, targets: &[String]) -> Self {
        let quoted: Vec<String> = targets.iter().map(|a| format!("'{a}'")).collect();
        let config = format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n- job_name: {job}\n  static_configs:\n  - targets: [{}]\n",
            quoted.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        Self::configured(dir, job)
    }

    /// Runs with `dir/prometheus.yml` as its configuration and its data in `dir`; `name` names its log.
    pub fn configured(dir: &Path, name: &str) -> Self {
        let port = free_port();
        let mut cmd = Command::new(prometheus_bin());
        cmd.arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let process = Managed::spawn(&format!("prometheus-{name}-{port}"), cmd);
        assert!(wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(20)), "{}", process.log_tail());
        Self { process, url: format!("http://127.0.0.1:{port}") }
    }
}
