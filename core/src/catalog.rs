//! The built-in scenarios: the original lab's 14, in three categories.
//! Each is a list of faults on target indices; targets are servers 0, 1 and 2.

use std::sync::OnceLock;

use serde::Serialize;

use crate::api::fault::{Fault, Latency, PacketLoss};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Category {
    #[serde(rename = "Single-Server Packet Loss")]
    SingleServerPacketLoss,
    #[serde(rename = "Single-Server Latency")]
    SingleServerLatency,
    #[serde(rename = "Multiple Simultaneous Failures")]
    MultipleSimultaneousFailures,
}

impl Category {
    pub const ALL: [Category; 3] =
        [Category::SingleServerPacketLoss, Category::SingleServerLatency, Category::MultipleSimultaneousFailures];

    pub fn title(self) -> &'static str {
        match self {
            Category::SingleServerPacketLoss => "Single-Server Packet Loss",
            Category::SingleServerLatency => "Single-Server Latency",
            Category::MultipleSimultaneousFailures => "Multiple Simultaneous Failures",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub category: Category,
    pub description: String,
    /// Faults during Testing.
    pub faults: Vec<Fault>,
}

/// Partial packet loss used by the single-server scenarios, in percent.
pub const PARTIAL_LOSS_PERCENT: f64 = 30.0;
pub const MODERATE_LATENCY_MS: i64 = 100;
pub const SEVERE_LATENCY_MS: i64 = 500;
/// How many servers every catalog scenario expects.
pub const SERVERS: usize = 3;

pub fn loss(target: i32, percent: f64) -> Fault {
    Fault { target, packet_loss: Some(PacketLoss { percent }), ..Fault::default() }
}

pub fn down(target: i32) -> Fault {
    Fault { target, down: Some(true), ..Fault::default() }
}

pub fn latency(target: i32, delay_ms: i64) -> Fault {
    Fault { target, latency: Some(Latency { delay_ms, jitter_ms: None }), ..Fault::default() }
}

/// All scenarios, in the order `chaoslab list` prints them.
pub fn scenarios() -> &'static [Scenario] {
    static CATALOG: OnceLock<Vec<Scenario>> = OnceLock::new();
    CATALOG.get_or_init(build)
}

pub fn find(name: &str) -> Option<&'static Scenario> {
    scenarios().iter().find(|s| s.name == name)
}

fn build() -> Vec<Scenario> {
    // Names must be &'static: the catalog is fixed at compile time.
    const LOSS: [[&str; 2]; 3] = [
        ["server-0-packet-loss-30", "server-0-packet-loss-100"],
        ["server-1-packet-loss-30", "server-1-packet-loss-100"],
        ["server-2-packet-loss-30", "server-2-packet-loss-100"],
    ];
    const LATENCY: [[&str; 2]; 3] = [
        ["server-0-latency-100ms", "server-0-latency-500ms"],
        ["server-1-latency-100ms", "server-1-latency-500ms"],
        ["server-2-latency-100ms", "server-2-latency-500ms"],
    ];
    let mut all = Vec::new();
    for (i, [partial, full]) in LOSS.iter().enumerate() {
        let t = i as i32;
        all.push(Scenario {
            name: partial,
            category: Category::SingleServerPacketLoss,
            description: format!("{PARTIAL_LOSS_PERCENT}% packet loss on server-{i} for the Testing phase"),
            faults: vec![loss(t, PARTIAL_LOSS_PERCENT)],
        });
        all.push(Scenario {
            name: full,
            category: Category::SingleServerPacketLoss,
            description: format!("100% packet loss on server-{i} for the Testing phase"),
            faults: vec![loss(t, 100.0)],
        });
    }
    for (i, [moderate, severe]) in LATENCY.iter().enumerate() {
        let t = i as i32;
        all.push(Scenario {
            name: moderate,
            category: Category::SingleServerLatency,
            description: format!("+{MODERATE_LATENCY_MS}ms latency on server-{i} for the Testing phase"),
            faults: vec![latency(t, MODERATE_LATENCY_MS)],
        });
        all.push(Scenario {
            name: severe,
            category: Category::SingleServerLatency,
            description: format!("+{SEVERE_LATENCY_MS}ms latency on server-{i} for the Testing phase"),
            faults: vec![latency(t, SEVERE_LATENCY_MS)],
        });
    }
    all.push(Scenario {
        name: "multi-failure-2-servers-latency",
        category: Category::MultipleSimultaneousFailures,
        description: format!(
            "+{SEVERE_LATENCY_MS}ms latency on 2 out of 3 servers simultaneously for the Testing phase"
        ),
        faults: vec![latency(0, SEVERE_LATENCY_MS), latency(1, SEVERE_LATENCY_MS)],
    });
    all.push(Scenario {
        name: "multi-failure-2-servers-packet-loss",
        category: Category::MultipleSimultaneousFailures,
        description: "100% packet loss on 2 out of 3 servers simultaneously for the Testing phase".to_string(),
        faults: vec![loss(0, 100.0), loss(1, 100.0)],
    });
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourteen_scenarios_in_three_categories() {
        let all = scenarios();
        assert_eq!(all.len(), 14);
        let count = |c| all.iter().filter(|s| s.category == c).count();
        assert_eq!(count(Category::SingleServerPacketLoss), 6);
        assert_eq!(count(Category::SingleServerLatency), 6);
        assert_eq!(count(Category::MultipleSimultaneousFailures), 2);
    }

    #[test]
    fn names_are_unique_and_lowercase_dns_labels() {
        let mut names: Vec<_> = scenarios().iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 14);
        for n in names {
            assert!(
                n.len() <= 63 && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
        }
    }

    #[test]
    fn multi_failure_scenarios_fault_two_of_three_servers() {
        let pl = find("multi-failure-2-servers-packet-loss").unwrap();
        assert_eq!(pl.faults, vec![loss(0, 100.0), loss(1, 100.0)]);
        let lat = find("multi-failure-2-servers-latency").unwrap();
        assert_eq!(lat.faults, vec![latency(0, 500), latency(1, 500)]);
    }

    #[test]
    fn every_server_gets_partial_and_full_loss_and_both_latencies() {
        for t in 0..SERVERS as i32 {
            let has = |f: &Fault| scenarios().iter().any(|s| s.faults == vec![f.clone()]);
            assert!(has(&loss(t, PARTIAL_LOSS_PERCENT)) && has(&loss(t, 100.0)), "server {t} loss");
            assert!(has(&latency(t, MODERATE_LATENCY_MS)) && has(&latency(t, SEVERE_LATENCY_MS)), "server {t} latency");
        }
    }
}
