//! The test harness: real peers (toxiproxy-server, redis-server, kube-apiserver with etcd) started
//! on free loopback ports, and real packet loss (a redis-server in a network namespace, as root).
//! Every process is killed when its handle drops, also when a test panics, and dies with the test
//! process (PR_SET_PDEATHSIG), so nothing is left listening.

mod bins;
mod control_plane;
mod java_client;
mod kube_fixtures;
mod lossy_redis;
mod measure;
mod netns;
mod ports;
mod process;
mod prometheus;
mod proxied;
mod redis;
mod redis_benchmark;
mod rtt;
mod scratch;
mod time;
mod toxiproxy;
mod wait;

pub use bins::{
    cache_dir, helm_bin, prometheus_bin, redis_server_bin, tool_version, toxiproxy_server_bin, workspace_bin,
};
pub use control_plane::{ControlPlane, repo_root};
pub use java_client::resilience4j_client_command;
pub use kube_fixtures::{install_crd, namespace, ready_pod, run_pod, scenario_namespace};
pub use lossy_redis::LossyRedis;
pub use measure::{Measured, PeakRss, rss_kib, run_measured};
pub use netns::{Loss, Netns, unavailable as netns_unavailable};
pub use ports::{free_port, loopback_ip, wait_for_port};
pub use process::Managed;
pub use prometheus::Prometheus;
pub use proxied::{ProxiedRedis, proxied_redis};
pub use redis::RedisServer;
pub use redis_benchmark::{BenchmarkRow, redis_benchmark};
pub use rtt::{Bounds, Connections, Distribution, Figures, Probe, round_trips};
pub use scratch::ScratchDir;
pub use time::{at, at_ms};
pub use toxiproxy::ToxiproxyServer;
pub use wait::eventually;
