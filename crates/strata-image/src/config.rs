//! Image configs. The stored config is always the exact bytes that hash to the image id;
//! these helpers read fields out of it and build new configs (import, later commit and
//! build) in the shape Docker writes.

use serde_json::{json, Map, Value};
use strata_store::Digest;

/// The fields of a container config that an image carries, in the order docker's
/// `container.Config` declares them (and so prints them).
/// A field name and, for fields docker always prints, its empty value.
pub type Field = (&'static str, Option<fn() -> Value>);

pub const CONTAINER_CONFIG_FIELDS: &[Field] = &[
    ("Hostname", Some(|| json!(""))),
    ("Domainname", Some(|| json!(""))),
    ("User", Some(|| json!(""))),
    ("AttachStdin", Some(|| json!(false))),
    ("AttachStdout", Some(|| json!(false))),
    ("AttachStderr", Some(|| json!(false))),
    ("ExposedPorts", None),
    ("Tty", Some(|| json!(false))),
    ("OpenStdin", Some(|| json!(false))),
    ("StdinOnce", Some(|| json!(false))),
    ("Env", Some(|| Value::Null)),
    ("Cmd", Some(|| Value::Null)),
    ("Healthcheck", None),
    ("ArgsEscaped", None),
    ("Image", Some(|| json!(""))),
    ("Volumes", Some(|| Value::Null)),
    ("WorkingDir", Some(|| json!(""))),
    ("Entrypoint", Some(|| Value::Null)),
    ("NetworkDisabled", None),
    ("OnBuild", Some(|| Value::Null)),
    ("Labels", Some(|| Value::Null)),
    ("StopSignal", None),
    ("StopTimeout", None),
    ("Shell", None),
];

/// The image `Config` as the Engine API ≥ 1.50 presents it: the image-spec fields in
/// their spec order, with the ones docker back-fills shown as empty values.
pub const INSPECT_CONFIG_FIELDS: &[Field] = &[
    ("User", Some(|| json!(""))),
    ("ExposedPorts", None),
    ("Env", Some(|| Value::Null)),
    ("Entrypoint", Some(|| Value::Null)),
    ("Cmd", Some(|| Value::Null)),
    ("Volumes", Some(|| Value::Null)),
    ("WorkingDir", Some(|| json!(""))),
    ("Labels", Some(|| Value::Null)),
    ("StopSignal", None),
    ("ArgsEscaped", None),
    ("Healthcheck", None),
    ("OnBuild", Some(|| Value::Null)),
    ("Shell", None),
];

/// Re-orders `cfg` into `fields` order, filling defaults and dropping absent optional
/// fields (and ones that are empty, as Go's omitempty would).
pub fn shape(cfg: &Map<String, Value>, fields: &[Field]) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, default) in fields {
        match (cfg.get(*name), default) {
            (Some(v), _) if !is_empty(v) || default.is_some() => {
                out.insert(name.to_string(), v.clone());
            }
            (_, Some(d)) => {
                out.insert(name.to_string(), d());
            }
            _ => {}
        }
    }
    out
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

/// A parsed view of a stored config.
#[derive(Debug, Clone)]
pub struct ImageConfig {
    pub raw: Vec<u8>,
    pub value: Map<String, Value>,
}

impl ImageConfig {
    pub fn parse(raw: Vec<u8>) -> Result<ImageConfig, serde_json::Error> {
        let value: Map<String, Value> = serde_json::from_slice(&raw)?;
        Ok(ImageConfig { raw, value })
    }

    pub fn id(&self) -> Digest {
        Digest::sha256_of(&self.raw)
    }

    pub fn str_field(&self, k: &str) -> &str {
        self.value.get(k).and_then(Value::as_str).unwrap_or("")
    }

    pub fn created(&self) -> &str {
        self.str_field("created")
    }

    pub fn container_config(&self) -> Map<String, Value> {
        self.value.get("config").and_then(Value::as_object).cloned().unwrap_or_default()
    }

    pub fn diff_ids(&self) -> Result<Vec<Digest>, String> {
        let ids = self
            .value
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        ids.iter()
            .map(|v| v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| format!("invalid diff id {v}")))
            .collect()
    }

    pub fn history(&self) -> Vec<Map<String, Value>> {
        self.value
            .get("history")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|h| h.as_object().cloned()).collect())
            .unwrap_or_default()
    }
}

/// Serialises a new config the way docker's `image.Image` marshals: top-level keys
/// sorted (docker round-trips through a map), nested objects in struct order.
pub fn to_bytes(top: Map<String, Value>) -> Vec<u8> {
    let mut keys: Vec<_> = top.keys().cloned().collect();
    keys.sort();
    let mut sorted = Map::new();
    let mut top = top;
    for k in keys {
        let v = top.remove(&k).expect("key present");
        sorted.insert(k, v);
    }
    serde_json::to_vec(&Value::Object(sorted)).expect("a JSON map serialises")
}

/// Chain ids: the identity of a layer together with everything below it.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::sha256_of(format!("{p} {diff_id}").as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        assert_eq!(chain_id(None, &a), a);
        assert_eq!(chain_id(Some(&a), &b), Digest::sha256_of(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn shapes_inspect_config_with_backfill() {
        let cfg: Map<String, Value> = serde_json::from_str(r#"{"Cmd":["sh"],"Hostname":"","StopSignal":"","ExposedPorts":{"80/tcp":{}}}"#).unwrap();
        let s = serde_json::to_string(&shape(&cfg, INSPECT_CONFIG_FIELDS)).unwrap();
        assert_eq!(s, r#"{"User":"","ExposedPorts":{"80/tcp":{}},"Env":null,"Entrypoint":null,"Cmd":["sh"],"Volumes":null,"WorkingDir":"","Labels":null,"OnBuild":null}"#);
    }
}
