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

/// Which Toxiproxy API a target's proxy serves: decides how partial packet loss is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProxyKind {
    /// toxiproxy-server 2.12.0: its seven toxic types.
    #[default]
    Toxiproxy,
    /// chaoslab's fault proxy: those and chaoslab's own `packet_loss`.
    Faultproxy,
}

/// The build metadata by which the fault proxy names itself in `GET /version` (`2.12.0+chaoslab-faultproxy`).
pub const FAULTPROXY_BUILD: &str = "chaoslab-faultproxy";

impl ProxyKind {
    /// The kind of a server from its `GET /version` answer.
    pub fn from_version(version: &str) -> Self {
        match version.split_once('+') {
            Some((_, build)) if build == FAULTPROXY_BUILD => ProxyKind::Faultproxy,
            _ => ProxyKind::Toxiproxy,
        }
    }
}

/// Linux's minimum retransmission timeout (TCP_RTO_MIN): a lost segment is sent again this late at
/// the soonest, on any link as fast as loopback or a LAN.
const RTO_MS: i64 = 200;
/// Linux's initial SYN (and SYN-ACK) retransmission timeout (TCP_TIMEOUT_INIT).
const SYN_RTO_MS: i64 = 1000;

/// The toxics for `percent` % packet loss on the packets the server sends (README, fault mapping).
fn loss_toxics(owner: &str, percent: f64, kind: ProxyKind) -> Vec<Toxic> {
    let p = (percent / 100.0).clamp(0.0, 1.0);
    let toxic = |what: &str, kind: ToxicType, stream: Stream, toxicity: f64, attributes: &[(&str, i64)]| Toxic {
        name: name(owner, what, stream),
        kind,
        stream,
        toxicity,
        attributes: attributes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    };
    if p >= 1.0 {
        // A blackhole: timeout 0 drops data and never closes, on both directions.
        return [Stream::Upstream, Stream::Downstream]
            .map(|s| toxic("loss", ToxicType::Timeout, s, 1.0, &[("timeout", 0)]))
            .into();
    }
    if p <= 0.0 {
        return Vec::new();
    }
    match kind {
        ProxyKind::Faultproxy => {
            let permille = (p * 1000.0).round() as i64;
            let attributes = [("permille", permille), ("rto", RTO_MS), ("syn_rto", SYN_RTO_MS), ("correlation", 0)];
            vec![toxic("loss", ToxicType::PacketLoss, Stream::Downstream, 1.0, &attributes)]
        }
        ProxyKind::Toxiproxy => vec![
            // Toxiproxy has no loss and draws a latency per chunk uniformly: it cannot make TCP's
            // step at the retransmission timeout. The closest combination we measured (README,
            // fault mapping; toxiproxy/tests/packet_loss.rs): 1.5 p of replies late uniformly up
            // to 2 RTO, so about p of them at least one RTO, as many as a kernel retransmits ...
            toxic("lossfirst", ToxicType::Latency, Stream::Downstream, 1.0, &jitter_for(1.5 * p, 2 * RTO_MS)),
            // ... p² of requests late up to 5 RTO, for the deeper losses (two or more in a row) ...
            toxic("lossdeep", ToxicType::Latency, Stream::Upstream, 1.0, &jitter_for(p * p, 5 * RTO_MS)),
            // ... and a new connection's lost SYN-ACK, which costs a second: a client with a timeout
            // of 1 s or less gives up on it as on a blackholed connection.
            toxic("losshandshake", ToxicType::Timeout, Stream::Downstream, p, &[("timeout", 0)]),
        ],
    }
}

/// Latency attributes that delay a share `share` of chunks (the rest not at all), uniformly up to
/// `max_ms`: Toxiproxy draws latency ± jitter per chunk and sends a negative delay at once, so
/// latency = max − jitter with jitter = max / (2 · share) leaves `1 − share` of the draws ≤ 0. A
/// share above 1 delays every chunk, uniformly between max · (1 − 1 / share) and max.
fn jitter_for(share: f64, max_ms: i64) -> [(&'static str, i64); 2] {
    let jitter = (max_ms as f64 / (2.0 * share)).round().min(1e15) as i64;
    [("latency", max_ms - jitter), ("jitter", jitter)]
}

/// The proxy state one fault asks for on a proxy of `kind`, with toxics named for `owner`.
pub fn desired_for(fault: &Fault, owner: &str, kind: ProxyKind) -> DesiredProxy {
    let mut toxics = Vec::new();
    if let Some(loss) = &fault.packet_loss {
        toxics.extend(loss_toxics(owner, loss.percent, kind));
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

    const KINDS: [ProxyKind; 2] = [ProxyKind::Toxiproxy, ProxyKind::Faultproxy];

    #[test]
    fn full_packet_loss_is_a_blackhole_both_ways_on_every_proxy() {
        for kind in KINDS {
            let d = desired_for(&loss(0, 100.0), "abc12345", kind);
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
    }

    #[test]
    fn no_loss_is_no_toxic() {
        for kind in KINDS {
            assert_eq!(desired_for(&loss(0, 0.0), "o", kind), DesiredProxy::clean("o"));
        }
    }

    #[test]
    fn partial_loss_on_the_fault_proxy_is_its_packet_loss_toxic_on_the_servers_packets() {
        for (percent, permille) in [(0.04, 0), (0.05, 1), (10.0, 100), (30.0, 300), (99.9, 999)] {
            let d = desired_for(&loss(1, percent), "o", ProxyKind::Faultproxy);
            assert_eq!(d.toxics.len(), 1, "{percent} %");
            let t = &d.toxics[0];
            assert_eq!((t.kind, t.stream, t.toxicity), (ToxicType::PacketLoss, Stream::Downstream, 1.0));
            let a = |k: &str| t.attributes[k];
            assert_eq!([a("permille"), a("rto"), a("syn_rto"), a("correlation")], [permille, 200, 1000, 0]);
            assert_eq!(owner_of(&t.name), Some("o"));
        }
    }

    /// The share of a latency toxic's draws latency + U[-jitter, jitter) that delay at all, and the
    /// longest delay.
    fn delayed_share_and_max(t: &Toxic) -> (f64, i64) {
        let (l, j) = (t.attributes["latency"], t.attributes["jitter"]);
        ((l + j) as f64 / (2 * j) as f64, l + j)
    }

    #[test]
    fn partial_loss_on_toxiproxy_delays_a_share_of_replies_and_blackholes_handshakes() {
        for percent in [1.0, 10.0, 30.0, 50.0, 90.0] {
            let p = percent / 100.0;
            let d = desired_for(&loss(1, percent), "o", ProxyKind::Toxiproxy);
            let kinds: Vec<(ToxicType, Stream)> = d.toxics.iter().map(|t| (t.kind, t.stream)).collect();
            let expected = [
                (ToxicType::Latency, Stream::Downstream),
                (ToxicType::Latency, Stream::Upstream),
                (ToxicType::Timeout, Stream::Downstream),
            ];
            assert_eq!(kinds, expected);
            let (first, deep) = (delayed_share_and_max(&d.toxics[0]), delayed_share_and_max(&d.toxics[1]));
            // 1.5 p of replies up to 400 ms (above 1: every reply, from 400 · (1 − 1 / 1.5 p) ms).
            assert!((first.0 - 1.5 * p).abs() < 0.002 && first.1 == 400, "{percent} %: first retransmission {first:?}");
            assert!((deep.0 - p * p).abs() < 0.002 && deep.1 == 1000, "{percent} %: deeper ones {deep:?}");
            assert_eq!([d.toxics[0].toxicity, d.toxics[1].toxicity, d.toxics[2].toxicity], [1.0, 1.0, p]);
            assert_eq!(d.toxics[2].attributes["timeout"], 0);
            let mut names: Vec<&str> = d.toxics.iter().map(|t| t.name.as_str()).collect();
            names.dedup();
            assert_eq!(names.len(), 3, "unique names: {names:?}");
        }
    }

    #[test]
    fn the_fault_proxy_is_known_by_its_version() {
        assert_eq!(ProxyKind::from_version("2.12.0+chaoslab-faultproxy"), ProxyKind::Faultproxy);
        assert_eq!(ProxyKind::from_version("2.12.0"), ProxyKind::Toxiproxy);
        assert_eq!(ProxyKind::from_version("2.12.0+other"), ProxyKind::Toxiproxy);
        assert_eq!(ProxyKind::from_version(""), ProxyKind::Toxiproxy);
    }

    #[test]
    fn latency_is_downstream_with_jitter() {
        let mut f = latency(2, 500);
        f.latency.as_mut().unwrap().jitter_ms = Some(50);
        let d = desired_for(&f, "o", ProxyKind::Toxiproxy);
        assert_eq!(d.toxics.len(), 1);
        let t = &d.toxics[0];
        assert_eq!((t.kind, t.stream), (ToxicType::Latency, Stream::Downstream));
        assert_eq!((t.attributes["latency"], t.attributes["jitter"]), (500, 50));
    }

    #[test]
    fn down_disables_the_proxy_and_marks_who_did() {
        let d = desired_for(&Fault { target: 0, down: Some(true), ..Fault::default() }, "o", ProxyKind::Toxiproxy);
        let expected =
            DesiredProxy { enabled: Some(false), toxics: vec![down_marker("o")], ..DesiredProxy::clean("o") };
        assert_eq!(d, expected);
        let marker = &d.toxics[0];
        assert_eq!(marker.toxicity, 0.0, "the marker never acts on a connection");
        assert_eq!(owner_of(&marker.name), Some("o"));
        assert!(is_down_marker(&marker.name, "o"));
        assert!(!is_down_marker(&marker.name, "p"));
        assert!(!is_down_marker(&desired_for(&latency(0, 5), "o", ProxyKind::Toxiproxy).toxics[0].name, "o"));
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
        let d = desired_for(&f, "o", ProxyKind::Toxiproxy);
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
