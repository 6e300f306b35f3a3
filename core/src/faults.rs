//! The fault → toxic mapping (documented in the README): what a fault means on a Toxiproxy.

use crate::{
    api::Fault,
    toxic::{Stream, Toxic, ToxicType},
};

/// Every toxic chaoslab creates starts with this, so it removes only its own.
pub const TOXIC_PREFIX: &str = "chaoslab-";

/// What to do with toxics chaoslab did not create (no `chaoslab-` name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Foreign {
    /// Leave them alone.
    #[default]
    Keep,
    /// Remove them too (the lab's reset before Stabilization and Recovery).
    Remove,
}

/// What one owner (a scenario, a local run) wants of one proxy: exactly these of its own toxics,
/// the proxy enabled or not, and what becomes of toxics that are not chaoslab's. Toxics of other
/// chaoslab owners are never touched.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DesiredProxy {
    /// The owner tag ([`owner_tag`]) of the toxics this state manages.
    pub owner: String,
    /// `None`: leave the flag alone, unless this owner disabled the proxy (its [`down_marker`] is
    /// there), then enable it again.
    pub enabled: Option<bool>,
    pub toxics: Vec<Toxic>,
    pub foreign: Foreign,
}

impl DesiredProxy {
    /// No faults: enabled, none of the owner's toxics.
    pub fn clean(owner: &str) -> Self {
        Self { owner: owner.into(), enabled: Some(true), toxics: Vec::new(), foreign: Foreign::Keep }
    }

    /// The lab's reset before and after Testing (the original lab's): clean, and no toxic that is
    /// not chaoslab's either.
    pub fn reset(owner: &str) -> Self {
        Self { foreign: Foreign::Remove, ..Self::clean(owner) }
    }

    /// The owner lets go: its toxics removed, the proxy enabled again only if the owner disabled it.
    /// What a run that ends, fails or is deleted leaves; it cannot undo another run's `down`.
    pub fn release(owner: &str) -> Self {
        Self { owner: owner.into(), enabled: None, toxics: Vec::new(), foreign: Foreign::Keep }
    }
}

/// The owner tag in toxic names: the first 8 alphanumerics of a scenario uid (or any run id), lowercased.
pub fn owner_tag(uid: &str) -> String {
    uid.chars().filter(char::is_ascii_alphanumeric).take(8).collect::<String>().to_ascii_lowercase()
}

/// The owner tag of a chaoslab toxic name, or None for a toxic chaoslab did not make.
pub fn owner_of(toxic_name: &str) -> Option<&str> {
    let rest = toxic_name.strip_prefix(TOXIC_PREFIX)?;
    let (owner, _) = rest.split_once('-')?;
    (!owner.is_empty()).then_some(owner)
}

fn name(owner: &str, what: &str, stream: Stream) -> String {
    format!("{TOXIC_PREFIX}{owner}-{what}-{}", stream.as_str())
}

const DOWN: &str = "down";

/// A toxic that does nothing (toxicity 0) and records on the proxy itself that `owner` disabled it,
/// so that only that owner enables it again, even after a crash that lost every other record.
pub fn down_marker(owner: &str) -> Toxic {
    Toxic {
        name: name(owner, DOWN, Stream::Upstream),
        kind: ToxicType::Latency,
        stream: Stream::Upstream,
        toxicity: 0.0,
        attributes: [("latency".to_string(), 0), ("jitter".to_string(), 0)].into(),
    }
}

/// Whether `toxic_name` is the [`down_marker`] of `owner`.
pub fn is_down_marker(toxic_name: &str, owner: &str) -> bool {
    toxic_name == name(owner, DOWN, Stream::Upstream)
}

/// Each loss toxic's toxicity for `percent` % of connections blackholed. Toxiproxy draws every
/// toxic independently per connection and either direction's blackhole loses the replies, so each
/// gets q with 1 − (1 − q)² = p (q = p would blackhole 51 % of connections for 30 %).
fn loss_toxicity(percent: f64) -> f64 {
    let p = (percent / 100.0).clamp(0.0, 1.0);
    1.0 - (1.0 - p).sqrt()
}

/// The proxy state one fault asks for, with toxics named for `owner`.
pub fn desired_for(fault: &Fault, owner: &str) -> DesiredProxy {
    let mut toxics = Vec::new();
    if let Some(loss) = &fault.packet_loss {
        // A blackhole: timeout 0 drops data and never closes, on both directions.
        let toxicity = loss_toxicity(loss.percent);
        for stream in [Stream::Upstream, Stream::Downstream] {
            toxics.push(Toxic {
                name: name(owner, "loss", stream),
                kind: ToxicType::Timeout,
                stream,
                toxicity,
                attributes: [("timeout".to_string(), 0)].into(),
            });
        }
    }
    if let Some(lat) = &fault.latency {
        toxics.push(Toxic {
            name: name(owner, "latency", Stream::Downstream),
            kind: ToxicType::Latency,
            stream: Stream::Downstream,
            toxicity: 1.0,
            attributes: [("latency".to_string(), lat.delay_ms), ("jitter".to_string(), lat.jitter_ms.unwrap_or(0))]
                .into(),
        });
    }
    for (i, custom) in fault.toxics.iter().flatten().enumerate() {
        let stream = custom.stream.unwrap_or_default();
        toxics.push(Toxic {
            name: name(owner, &format!("{}{i}", custom.kind.as_str().replace('_', "")), stream),
            kind: custom.kind,
            stream,
            toxicity: custom.toxicity.unwrap_or(1.0),
            attributes: custom.attributes.to_map(),
        });
    }
    let down = fault.down == Some(true);
    if down {
        toxics.push(down_marker(owner));
    }
    DesiredProxy { owner: owner.into(), enabled: Some(!down), toxics, foreign: Foreign::Keep }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{CustomToxic, ToxicAttributes},
        catalog::{latency, loss},
    };

    #[test]
    fn full_packet_loss_is_a_blackhole_both_ways() {
        let d = desired_for(&loss(0, 100.0), "abc12345");
        assert_eq!(d.enabled, Some(true));
        assert_eq!(d.toxics.len(), 2);
        for (t, stream) in d.toxics.iter().zip([Stream::Upstream, Stream::Downstream]) {
            assert_eq!(t.kind, ToxicType::Timeout);
            assert_eq!(t.stream, stream);
            assert_eq!(t.toxicity, 1.0);
            assert_eq!(t.attributes["timeout"], 0);
            assert_eq!(owner_of(&t.name), Some("abc12345"));
        }
    }

    #[test]
    fn partial_loss_blackholes_that_share_of_connections() {
        for percent in [0.0, 1.0, 10.0, 30.0, 50.0, 90.0, 99.9, 100.0] {
            let d = desired_for(&loss(1, percent), "o");
            let streams: Vec<Stream> = d.toxics.iter().map(|t| t.stream).collect();
            assert_eq!(streams, [Stream::Upstream, Stream::Downstream]);
            let q = d.toxics[0].toxicity;
            assert_eq!(d.toxics[1].toxicity, q);
            // Drawn independently per connection: blackholed if either draw hits.
            let either = 1.0 - (1.0 - q) * (1.0 - q);
            assert!((either - percent / 100.0).abs() < 1e-9, "{percent} %: toxicity {q} blackholes {either}");
        }
    }

    #[test]
    fn latency_is_downstream_with_jitter() {
        let mut f = latency(2, 500);
        f.latency.as_mut().unwrap().jitter_ms = Some(50);
        let d = desired_for(&f, "o");
        assert_eq!(d.toxics.len(), 1);
        let t = &d.toxics[0];
        assert_eq!((t.kind, t.stream), (ToxicType::Latency, Stream::Downstream));
        assert_eq!((t.attributes["latency"], t.attributes["jitter"]), (500, 50));
    }

    #[test]
    fn down_disables_the_proxy_and_marks_who_did() {
        let d = desired_for(&Fault { target: 0, down: Some(true), ..Fault::default() }, "o");
        let expected =
            DesiredProxy { enabled: Some(false), toxics: vec![down_marker("o")], ..DesiredProxy::clean("o") };
        assert_eq!(d, expected);
        let marker = &d.toxics[0];
        assert_eq!(marker.toxicity, 0.0, "the marker never acts on a connection");
        assert_eq!(owner_of(&marker.name), Some("o"));
        assert!(is_down_marker(&marker.name, "o"));
        assert!(!is_down_marker(&marker.name, "p"));
        assert!(!is_down_marker(&desired_for(&latency(0, 5), "o").toxics[0].name, "o"));
    }

    #[test]
    fn custom_toxics_pass_through_with_unique_names() {
        let bw = CustomToxic {
            kind: ToxicType::Bandwidth,
            stream: None,
            toxicity: Some(0.5),
            attributes: ToxicAttributes { rate: Some(10), ..Default::default() },
        };
        let f = Fault { target: 0, toxics: Some(vec![bw.clone(), bw]), ..Fault::default() };
        let d = desired_for(&f, "o");
        assert_eq!(d.toxics.len(), 2);
        assert_ne!(d.toxics[0].name, d.toxics[1].name);
        assert_eq!(d.toxics[0].toxicity, 0.5);
        assert_eq!(d.toxics[0].attributes["rate"], 10);
    }

    #[test]
    fn owner_tags_and_foreign_names() {
        assert_eq!(owner_tag("6F1C-29aa-4d3e-beef"), "6f1c29aa");
        assert_eq!(owner_of("chaoslab-6f1c29aa-loss-upstream"), Some("6f1c29aa"));
        assert_eq!(owner_of("latency_downstream"), None);
        assert_eq!(owner_of("chaoslab-"), None);
    }
}
