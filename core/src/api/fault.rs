//! The faults a scenario puts on its targets during Testing, as the API spells them.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::toxic::{Stream, ToxicType};

/// Upper bound on targets and fault indices; keeps CEL cost estimates small.
pub const MAX_TARGETS: i32 = 64;

/// The faults one target suffers during Testing. At least one effect must be set; they combine.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.packetLoss) || has(self.latency) || (has(self.down) && self.down) || (has(self.toxics) && size(self.toxics) > 0)")
    .message("a fault needs at least one effect: packetLoss, latency, down: true, or toxics"))]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// Index of the target, 0-based: pods matching the selector sorted by name, or the endpoints in order.
    #[schemars(range(min = 0, max = MAX_TARGETS - 1))]
    pub target: i32,
    /// Lose a share of the packets the server sends: every connection's data is late by TCP's
    /// retransmissions; at 100 % nothing gets through (a blackhole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet_loss: Option<PacketLoss>,
    /// Delay data from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// Disable the proxy: connections are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<bool>,
    /// Any other Toxiproxy toxics, passed through as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub toxics: Option<Vec<CustomToxic>>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PacketLoss {
    /// Share of the server's packets lost, 0–100 (as `tc netem loss` on its interface); at 100
    /// every connection drops data both ways.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percent: f64,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    /// Added delay in milliseconds.
    #[schemars(range(min = 0, max = 3_600_000))]
    pub delay_ms: i64,
    /// Uniform jitter (±) in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3_600_000))]
    pub jitter_ms: Option<i64>,
}

/// A Toxiproxy toxic passed through unchanged (attributes in Toxiproxy's own units).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(custom_toxic_attribute_rule()).message(kube::core::Message::Message(custom_toxic_attribute_message())))]
pub struct CustomToxic {
    #[serde(rename = "type")]
    #[schemars(schema_with = "toxiproxy_type_schema")]
    pub kind: ToxicType,
    /// Default downstream (server → client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<Stream>,
    /// Probability 0–1 that a connection gets the toxic; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub toxicity: Option<f64>,
    /// The toxic type's attributes, e.g. `{rate: 100}` for bandwidth; missing ones are 0.
    #[serde(default)]
    pub attributes: ToxicAttributes,
}

/// Every attribute a Toxiproxy toxic reads, by Toxiproxy's own names and units.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ToxicAttributes {
    /// latency: delay in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub latency: Option<i64>,
    /// latency: jitter in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub jitter: Option<i64>,
    /// bandwidth: KB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub rate: Option<i64>,
    /// slow_close: ms; slicer: µs between chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub delay: Option<i64>,
    /// timeout, reset_peer: ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub timeout: Option<i64>,
    /// slicer: bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub average_size: Option<i64>,
    /// slicer: bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub size_variation: Option<i64>,
    /// limit_data: bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub bytes: Option<i64>,
}

impl ToxicAttributes {
    /// The attributes that are set, as Toxiproxy's attribute map.
    pub fn to_map(&self) -> BTreeMap<String, i64> {
        let v = serde_json::to_value(self).expect("attributes serialize");
        serde_json::from_value(v).expect("attributes are integers")
    }
}

/// A custom toxic's type is one a toxiproxy-server has: the targets the operator drives are real
/// Toxiproxy sidecars, which refuse chaoslab's own `packet_loss` (that comes from `packetLoss`).
fn toxiproxy_type_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = ToxicType::TOXIPROXY.iter().map(|t| t.as_str()).collect();
    schemars::json_schema!({
        "description": "A Toxiproxy 2.12.0 toxic type.",
        "type": "string",
        "enum": names,
    })
}

/// Each attribute is allowed only on the toxic types that read it (a cheap, constant-cost CEL rule).
fn custom_toxic_attribute_rule() -> String {
    let mut names: Vec<&str> = ToxicType::TOXIPROXY.iter().flat_map(|t| t.attribute_names().iter().copied()).collect();
    names.sort();
    names.dedup();
    let clauses: Vec<String> = names
        .iter()
        .map(|n| {
            let types: Vec<String> = ToxicType::TOXIPROXY
                .iter()
                .filter(|t| t.attribute_names().contains(n))
                .map(|t| format!("'{}'", t.as_str()))
                .collect();
            format!("(!has(self.attributes.{n}) || self.type in [{}])", types.join(", "))
        })
        .collect();
    format!("!has(self.attributes) || ({})", clauses.join(" && "))
}

fn custom_toxic_attribute_message() -> String {
    let per_type: Vec<String> =
        ToxicType::TOXIPROXY.iter().map(|t| format!("{}: {}", t.as_str(), t.attribute_names().join(", "))).collect();
    format!("an attribute this toxic type does not read; allowed: {}", per_type.join("; "))
}
