//! The Toxiproxy data model: toxics as its HTTP API reads and writes them.
//! Shared by the fault mapping (which builds them), the Toxiproxy client and the fault proxy.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Direction of a toxic. `upstream` is client → server, `downstream` is server → client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Upstream,
    #[default]
    Downstream,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// The toxic types: Toxiproxy v2's, and chaoslab's own `packet_loss` (the embedded fault proxy
/// only; see `faultproxy/README.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToxicType {
    Latency,
    Bandwidth,
    SlowClose,
    Timeout,
    ResetPeer,
    Slicer,
    LimitData,
    /// What TCP makes of lost packets: data late by retransmission timeouts, never dropped.
    PacketLoss,
}

impl ToxicType {
    pub const ALL: [ToxicType; 8] = [
        ToxicType::Latency,
        ToxicType::Bandwidth,
        ToxicType::SlowClose,
        ToxicType::Timeout,
        ToxicType::ResetPeer,
        ToxicType::Slicer,
        ToxicType::LimitData,
        ToxicType::PacketLoss,
    ];

    /// The types a toxiproxy-server 2.12.0 has (all but chaoslab's own).
    pub const TOXIPROXY: [ToxicType; 7] = [
        ToxicType::Latency,
        ToxicType::Bandwidth,
        ToxicType::SlowClose,
        ToxicType::Timeout,
        ToxicType::ResetPeer,
        ToxicType::Slicer,
        ToxicType::LimitData,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ToxicType::Latency => "latency",
            ToxicType::Bandwidth => "bandwidth",
            ToxicType::SlowClose => "slow_close",
            ToxicType::Timeout => "timeout",
            ToxicType::ResetPeer => "reset_peer",
            ToxicType::Slicer => "slicer",
            ToxicType::LimitData => "limit_data",
            ToxicType::PacketLoss => "packet_loss",
        }
    }

    /// The attributes this type reads; Toxiproxy treats a missing one as 0.
    pub fn attribute_names(self) -> &'static [&'static str] {
        match self {
            ToxicType::Latency => &["latency", "jitter"],
            ToxicType::Bandwidth => &["rate"],
            ToxicType::SlowClose => &["delay"],
            ToxicType::Timeout | ToxicType::ResetPeer => &["timeout"],
            ToxicType::Slicer => &["average_size", "size_variation", "delay"],
            ToxicType::LimitData => &["bytes"],
            ToxicType::PacketLoss => &["permille", "rto", "syn_rto", "correlation"],
        }
    }
}

/// One toxic on one proxy. Attributes are integers in Toxiproxy's units (ms, KB/s, bytes, µs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Toxic {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ToxicType,
    #[serde(default)]
    pub stream: Stream,
    #[serde(default = "full_toxicity")]
    pub toxicity: f64,
    #[serde(default)]
    pub attributes: BTreeMap<String, i64>,
}

fn full_toxicity() -> f64 {
    1.0
}

impl Toxic {
    /// True when `other` can become `self` by a PATCH (same name, type and stream; Toxiproxy makes those immutable).
    pub fn same_identity(&self, other: &Toxic) -> bool {
        self.name == other.name && self.kind == other.kind && self.stream == other.stream
    }

    /// Equal as Toxiproxy would apply them: missing attributes count as 0.
    pub fn same_effect(&self, other: &Toxic) -> bool {
        let attr = |t: &Toxic, k: &str| t.attributes.get(k).copied().unwrap_or(0);
        self.same_identity(other)
            // Toxiproxy keeps toxicity as a float32: compare at that precision.
            && (self.toxicity as f32 - other.toxicity as f32).abs() <= f32::EPSILON
            && self.kind.attribute_names().iter().all(|k| attr(self, k) == attr(other, k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_toxiproxy_json_with_defaults() {
        let t: Toxic = serde_json::from_str(r#"{"name":"x","type":"latency","attributes":{"latency":500}}"#).unwrap();
        assert_eq!(t.stream, Stream::Downstream);
        assert_eq!(t.toxicity, 1.0);
        assert_eq!(t.attributes["latency"], 500);
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["type"], "latency");
        assert_eq!(json["stream"], "downstream");
    }

    #[test]
    fn toxiproxy_has_every_type_but_chaoslabs_own() {
        let own: Vec<ToxicType> = ToxicType::ALL.into_iter().filter(|t| !ToxicType::TOXIPROXY.contains(t)).collect();
        assert_eq!(own, [ToxicType::PacketLoss]);
        let json = serde_json::to_value(ToxicType::PacketLoss).unwrap();
        assert_eq!(json, ToxicType::PacketLoss.as_str());
    }

    #[test]
    fn same_effect_treats_missing_attributes_as_zero() {
        let a = Toxic {
            name: "x".into(),
            kind: ToxicType::Latency,
            stream: Stream::Downstream,
            toxicity: 1.0,
            attributes: [("latency".to_string(), 100)].into(),
        };
        let mut b = a.clone();
        b.attributes.insert("jitter".into(), 0);
        assert!(a.same_effect(&b));
        b.attributes.insert("jitter".into(), 5);
        assert!(!a.same_effect(&b));
        let mut c = a.clone();
        c.stream = Stream::Upstream;
        assert!(!a.same_identity(&c));
    }
}
