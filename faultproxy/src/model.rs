//! The API's JSON: request bodies read as Toxiproxy reads them (defaults, validation order, messages) and
//! replies written as it writes them (field order, every attribute of the type, float32 toxicity).

use std::collections::BTreeMap;

use chaoslab_core::toxic::{Stream, Toxic, ToxicType};
use serde::{Serialize, Serializer, ser::SerializeMap};

use crate::{
    error::ApiError,
    gojson::{self, JVal},
};

/// A proxy's configurable fields, as `POST /proxies` and `PATCH /proxies/{p}` read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProxyFields {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
}

impl ProxyFields {
    /// What `POST /proxies` starts from: Toxiproxy enables a new proxy unless told otherwise.
    pub fn for_create() -> Self {
        Self { name: String::new(), listen: String::new(), upstream: String::new(), enabled: true }
    }
}

const PROXY_FIELDS: [&str; 4] = ["name", "listen", "upstream", "enabled"];
const POPULATE_TYPE: &str = r#"[]struct { toxiproxy.Proxy; Enabled *bool "json:\"enabled\"" }"#;
const POPULATE_ITEM_TYPE: &str = r#"struct { toxiproxy.Proxy; Enabled *bool "json:\"enabled\"" }"#;
const TOXIC_UPDATE_TYPE: &str =
    r#"struct { Attributes interface {} "json:\"attributes\""; Toxicity float32 "json:\"toxicity\"" }"#;

fn decode(body: &[u8]) -> Result<JVal, ApiError> {
    gojson::decode(body).map_err(ApiError::bad_body)
}

/// Applies one proxy object's members over `into`. `prefix` is how Go names the struct in type errors.
fn apply_proxy_members(
    obj: &[(String, JVal)],
    into: &mut ProxyFields,
    enabled: &mut Option<bool>,
    prefix: &str,
    enabled_field: &str,
) -> Result<(), String> {
    for (field, v) in gojson::members(obj, &PROXY_FIELDS) {
        match field {
            "enabled" => {
                if let Some(b) = gojson::boolean(v, enabled_field)? {
                    *enabled = Some(b);
                }
            }
            f => {
                if let Some(s) = gojson::string(v, &format!("{prefix}{f}"))? {
                    match f {
                        "name" => into.name = s,
                        "listen" => into.listen = s,
                        _ => into.upstream = s,
                    }
                }
            }
        }
    }
    Ok(())
}

/// Reads a proxy body over `defaults` (Go decodes into a struct pre-filled with them).
pub(crate) fn proxy_body(body: &[u8], defaults: ProxyFields) -> Result<ProxyFields, ApiError> {
    let mut out = defaults;
    match decode(body)? {
        JVal::Null => {}
        JVal::Obj(obj) => {
            let mut enabled = None;
            apply_proxy_members(&obj, &mut out, &mut enabled, "Proxy.", "Proxy.enabled").map_err(ApiError::bad_body)?;
            if let Some(e) = enabled {
                out.enabled = e;
            }
        }
        other => return Err(ApiError::bad_body(gojson::value_error(other.kind(), "toxiproxy.Proxy"))),
    }
    Ok(out)
}

/// Reads `POST /populate`: an array of proxies whose `enabled` defaults to true. Like Toxiproxy, every
/// item is checked for a name and an upstream before anything changes.
pub(crate) fn populate_body(body: &[u8]) -> Result<Vec<ProxyFields>, ApiError> {
    let items = match decode(body)? {
        JVal::Null => Vec::new(),
        JVal::Arr(items) => items,
        other => return Err(ApiError::bad_body(gojson::value_error(other.kind(), POPULATE_TYPE))),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let mut fields = ProxyFields { enabled: true, ..ProxyFields::for_create() };
        match item {
            JVal::Null => {}
            JVal::Obj(obj) => {
                let mut enabled = None;
                apply_proxy_members(obj, &mut fields, &mut enabled, ".Proxy.", ".enabled")
                    .map_err(ApiError::bad_body)?;
                fields.enabled = enabled.unwrap_or(true);
            }
            other => return Err(ApiError::bad_body(gojson::value_error(other.kind(), POPULATE_ITEM_TYPE))),
        }
        out.push(fields);
    }
    for (i, p) in out.iter().enumerate() {
        if p.name.is_empty() {
            return Err(ApiError::missing_field(format!("name at proxy {}", i + 1)));
        }
        if p.upstream.is_empty() {
            return Err(ApiError::missing_field(format!("upstream at proxy {}", i + 1)));
        }
    }
    Ok(out)
}

/// How Go names a toxic type's struct, and the Go type of its attributes (for type errors).
fn go_type(kind: ToxicType) -> (&'static str, &'static str) {
    match kind {
        ToxicType::Latency => ("LatencyToxic", "int64"),
        ToxicType::Bandwidth => ("BandwidthToxic", "int64"),
        ToxicType::SlowClose => ("SlowCloseToxic", "int64"),
        ToxicType::Timeout => ("TimeoutToxic", "int64"),
        ToxicType::ResetPeer => ("ResetToxic", "int64"),
        ToxicType::Slicer => ("SlicerToxic", "int"),
        ToxicType::LimitData => ("LimitDataToxic", "int64"),
        // chaoslab's own: named as Toxiproxy would name it.
        ToxicType::PacketLoss => ("PacketLossToxic", "int64"),
    }
}

/// Reads one `attributes` object into `attrs` (only the type's own attributes; others are ignored).
fn apply_attributes(obj: &[(String, JVal)], kind: ToxicType, attrs: &mut BTreeMap<String, i64>) -> Result<(), String> {
    let (go_name, int_type) = go_type(kind);
    for (field, v) in gojson::members(obj, kind.attribute_names()) {
        if let Some(n) = gojson::integer(v, &format!("{go_name}.attributes.{field}"), int_type)? {
            attrs.insert(field.to_string(), n);
        }
    }
    Ok(())
}

/// Every attribute of the type, missing ones 0 (Toxiproxy shows the whole struct).
fn full_attributes(kind: ToxicType) -> BTreeMap<String, i64> {
    kind.attribute_names().iter().map(|a| (a.to_string(), 0)).collect()
}

/// Reads `POST /proxies/{p}/toxics` in Toxiproxy's order of checks: body, stream, default name, type,
/// existing name (`exists`), then the attributes for that type.
pub(crate) fn toxic_create(body: &[u8], exists: impl Fn(&str) -> bool) -> Result<Toxic, ApiError> {
    let top = decode(body)?;
    let obj: &[(String, JVal)] = match &top {
        JVal::Null => &[],
        JVal::Obj(obj) => obj,
        other => return Err(ApiError::bad_body(gojson::value_error(other.kind(), "toxics.ToxicWrapper"))),
    };
    let (mut name, mut kind, mut stream, mut toxicity) = (String::new(), String::new(), "downstream".to_string(), 1f32);
    let mut first_pass = || -> Result<(), String> {
        for (field, v) in gojson::members(obj, &["attributes", "name", "type", "stream", "toxicity"]) {
            let path = format!("ToxicWrapper.{field}");
            match field {
                "attributes" => match v {
                    JVal::Null | JVal::Obj(_) => {}
                    other => return Err(gojson::field_error(other.kind(), &path, "toxics.NoopToxic")),
                },
                "toxicity" => {
                    if let Some(t) = gojson::float32(v, &path)? {
                        toxicity = t;
                    }
                }
                f => {
                    if let Some(s) = gojson::string(v, &path)? {
                        match f {
                            "name" => name = s,
                            "type" => kind = s,
                            _ => stream = s,
                        }
                    }
                }
            }
        }
        Ok(())
    };
    first_pass().map_err(ApiError::bad_body)?;

    let parsed_stream = match stream.to_ascii_lowercase().as_str() {
        "upstream" => Stream::Upstream,
        "downstream" => Stream::Downstream,
        _ => return Err(ApiError::invalid_stream()),
    };
    if name.is_empty() {
        // Toxiproxy names it after the stream as written, e.g. `latency_UpStream`.
        name = format!("{kind}_{stream}");
    }
    let kind = ToxicType::ALL.into_iter().find(|t| t.as_str() == kind).ok_or_else(ApiError::invalid_toxic_type)?;
    if exists(&name) {
        return Err(ApiError::toxic_exists());
    }
    let mut attributes = full_attributes(kind);
    for (_, v) in gojson::members(obj, &["attributes"]) {
        if let JVal::Obj(a) = v {
            apply_attributes(a, kind, &mut attributes).map_err(ApiError::bad_body)?;
        }
    }
    Ok(Toxic { name, kind, stream: parsed_stream, toxicity: f64::from(toxicity), attributes })
}

/// Reads `PATCH /proxies/{p}/toxics/{t}`: attributes merge into the current ones, toxicity replaces it;
/// name, type and stream cannot change (other keys are ignored, as Toxiproxy does).
pub(crate) fn toxic_update(body: &[u8], current: &Toxic) -> Result<Toxic, ApiError> {
    let mut out = current.clone();
    for a in current.kind.attribute_names() {
        out.attributes.entry(a.to_string()).or_insert(0);
    }
    let obj = match decode(body)? {
        JVal::Null => return Ok(out),
        JVal::Obj(obj) => obj,
        other => return Err(ApiError::bad_body(gojson::value_error(other.kind(), TOXIC_UPDATE_TYPE))),
    };
    let mut apply = || -> Result<(), String> {
        for (field, v) in gojson::members(&obj, &["attributes", "toxicity"]) {
            match (field, v) {
                ("attributes", JVal::Null) => {}
                ("attributes", JVal::Obj(a)) => apply_attributes(a, current.kind, &mut out.attributes)?,
                ("attributes", other) => {
                    let go = format!("toxics.{}", go_type(current.kind).0);
                    return Err(gojson::field_error(other.kind(), ".attributes", &go));
                }
                (_, v) => {
                    if let Some(t) = gojson::float32(v, ".toxicity")? {
                        out.toxicity = f64::from(t);
                    }
                }
            }
        }
        Ok(())
    };
    apply().map_err(ApiError::bad_body)?;
    Ok(out)
}

/// A toxic as Toxiproxy writes it: `{"attributes":{...},"name","type","stream","toxicity"}`.
pub(crate) struct GoToxic<'a>(pub &'a Toxic);

struct GoAttributes<'a>(&'a Toxic);

impl Serialize for GoAttributes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let names = self.0.kind.attribute_names();
        let mut m = s.serialize_map(Some(names.len()))?;
        for a in names {
            m.serialize_entry(a, &self.0.attributes.get(*a).copied().unwrap_or(0))?;
        }
        m.end()
    }
}

impl Serialize for GoToxic<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let toxicity = serde_json::value::RawValue::from_string(gojson::format_float32(t.toxicity as f32))
            .map_err(serde::ser::Error::custom)?;
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("attributes", &GoAttributes(t))?;
        m.serialize_entry("name", &t.name)?;
        m.serialize_entry("type", t.kind.as_str())?;
        m.serialize_entry("stream", t.stream.as_str())?;
        m.serialize_entry("toxicity", &toxicity)?;
        m.end()
    }
}

/// A proxy as Toxiproxy writes it, including the `"Logger":{}` its Go struct leaks.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ProxyView {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub toxics: Vec<Toxic>,
}

impl Serialize for ProxyView {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let toxics: Vec<GoToxic<'_>> = self.toxics.iter().map(GoToxic).collect();
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("name", &self.name)?;
        m.serialize_entry("listen", &self.listen)?;
        m.serialize_entry("upstream", &self.upstream)?;
        m.serialize_entry("enabled", &self.enabled)?;
        m.serialize_entry("Logger", &serde_json::Map::new())?;
        m.serialize_entry("toxics", &toxics)?;
        m.end()
    }
}

/// `POST /populate`'s reply: the proxies (null when none), after the error when there is one.
#[derive(Serialize)]
pub(crate) struct PopulateReply<'a> {
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a ApiError>,
    pub proxies: Option<&'a [ProxyView]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(body: &str) -> Result<Toxic, ApiError> {
        toxic_create(body.as_bytes(), |n| n == "taken")
    }

    #[test]
    fn toxic_defaults_follow_toxiproxy() {
        let t = create(r#"{"type":"latency","attributes":{"latency":100,"bogus":3}}"#).unwrap();
        assert_eq!((t.name.as_str(), t.stream, t.toxicity), ("latency_downstream", Stream::Downstream, 1.0));
        assert_eq!(t.attributes, [("jitter".to_string(), 0), ("latency".to_string(), 100)].into());
        let t = create(r#"{"type":"timeout","stream":"UpStream"}"#).unwrap();
        assert_eq!((t.name.as_str(), t.stream), ("timeout_UpStream", Stream::Upstream));
        let t = create(r#"{"Name":"x","TYPE":"slicer","toxicity":0.3333333333333}"#).unwrap();
        assert_eq!(t.name, "x");
        assert_eq!(
            serde_json::to_string(&GoToxic(&t)).unwrap(),
            r#"{"attributes":{"average_size":0,"size_variation":0,"delay":0},"name":"x","type":"slicer","stream":"downstream","toxicity":0.33333334}"#
        );
    }

    #[test]
    fn toxic_errors_come_in_toxiproxys_order() {
        let msg = |b: &str| create(b).unwrap_err().message;
        assert_eq!(msg(""), "bad request body: EOF");
        assert_eq!(msg(r#"{"type":"latency","stream":"sideways"}"#), ApiError::invalid_stream().message);
        assert_eq!(msg(r#"{"type":"latency","stream":""}"#), ApiError::invalid_stream().message);
        assert_eq!(msg(r#"{"type":"nope"}"#), "invalid toxic type");
        assert_eq!(msg("null"), "invalid toxic type");
        assert_eq!(msg(r#"{"name":"taken","type":"nope"}"#), "invalid toxic type");
        assert_eq!(create(r#"{"name":"taken","type":"latency"}"#).unwrap_err().status, 409);
        assert_eq!(
            msg(r#"{"toxicity":"x","name":5}"#),
            "bad request body: json: cannot unmarshal string into Go struct field ToxicWrapper.toxicity of type float32"
        );
        assert_eq!(
            msg(r#"{"type":"slow_close","attributes":[]}"#),
            "bad request body: json: cannot unmarshal array into Go struct field ToxicWrapper.attributes of type toxics.NoopToxic"
        );
        assert_eq!(
            msg(r#"{"type":"bandwidth","attributes":{"rate":"fast"}}"#),
            "bad request body: json: cannot unmarshal string into Go struct field BandwidthToxic.attributes.rate of type int64"
        );
        assert_eq!(
            msg(r#""str""#),
            "bad request body: json: cannot unmarshal string into Go value of type toxics.ToxicWrapper"
        );
    }

    #[test]
    fn toxic_update_merges_attributes_and_keeps_identity() {
        let cur = create(r#"{"type":"latency","attributes":{"latency":100}}"#).unwrap();
        let up = toxic_update(br#"{"attributes":{"jitter":10},"name":"x","stream":"upstream"}"#, &cur).unwrap();
        assert_eq!(
            (up.attributes["latency"], up.attributes["jitter"], up.name.as_str()),
            (100, 10, "latency_downstream")
        );
        let up = toxic_update(br#"{"toxicity":0.1}"#, &up).unwrap();
        assert_eq!(up.toxicity as f32, 0.1);
        assert_eq!(toxic_update(br#"{"toxicity":null,"attributes":null}"#, &up).unwrap(), up);
        assert_eq!(
            toxic_update(br#"{"attributes":[]}"#, &up).unwrap_err().message,
            "bad request body: json: cannot unmarshal array into Go struct field .attributes of type toxics.LatencyToxic"
        );
        assert!(toxic_update(b"[]", &up).unwrap_err().message.contains(TOXIC_UPDATE_TYPE));
    }

    #[test]
    fn proxy_bodies_and_populate() {
        let p = proxy_body(br#"{"name":"a","upstream":"x:1","extra":1}"#, ProxyFields::for_create()).unwrap();
        assert_eq!((p.name.as_str(), p.listen.as_str(), p.enabled), ("a", "", true));
        assert_eq!(
            proxy_body(b"[]", ProxyFields::for_create()).unwrap_err().message,
            "bad request body: json: cannot unmarshal array into Go value of type toxiproxy.Proxy"
        );
        assert_eq!(
            proxy_body(br#"{"enabled":"no"}"#, ProxyFields::for_create()).unwrap_err().message,
            "bad request body: json: cannot unmarshal string into Go struct field Proxy.enabled of type bool"
        );
        assert_eq!(populate_body(b"[]").unwrap(), vec![]);
        assert_eq!(
            populate_body(br#"[{"name":"x","upstream":"u"},{"upstream":"u"}]"#).unwrap_err().message,
            "missing required field: name at proxy 2"
        );
        assert_eq!(
            populate_body(br#"[{"name":5}]"#).unwrap_err().message,
            "bad request body: json: cannot unmarshal number into Go struct field .Proxy.name of type string"
        );
        assert!(populate_body(b"{}").unwrap_err().message.ends_with(POPULATE_TYPE));
        let items = populate_body(br#"[{"name":"x","upstream":"u","enabled":false}]"#).unwrap();
        assert!(!items[0].enabled);
    }

    #[test]
    fn proxy_view_is_written_like_toxiproxy() {
        let v = ProxyView {
            name: "a".into(),
            listen: "127.0.0.1:1".into(),
            upstream: "127.0.0.1:2".into(),
            enabled: true,
            toxics: vec![],
        };
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"name":"a","listen":"127.0.0.1:1","upstream":"127.0.0.1:2","enabled":true,"Logger":{},"toxics":[]}"#
        );
        let err = ApiError::missing_field("name at proxy 1");
        let r = PopulateReply { error: Some(&err), proxies: None };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"error":"missing required field: name at proxy 1","status":400,"proxies":null}"#
        );
    }
}
