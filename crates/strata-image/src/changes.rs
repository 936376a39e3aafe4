//! `--change` lines for `import` and `commit`: Dockerfile instructions that only touch
//! the config.

use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    #[error("{0} is not a valid change command")]
    NotAllowed(String),
    #[error("{0} requires at least one argument")]
    MissingArgs(String),
    #[error("{instr}: {msg}")]
    Syntax { instr: String, msg: String },
}

const ALLOWED: &[&str] = &["cmd", "entrypoint", "env", "expose", "label", "onbuild", "stopsignal", "user", "volume", "workdir"];

/// Applies each change line to a container config (docker's `container.Config` map).
pub fn apply(cfg: &mut Map<String, Value>, changes: &[String]) -> Result<(), ChangeError> {
    for line in changes {
        let line = line.trim();
        let (instr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let lower = instr.to_ascii_lowercase();
        if !ALLOWED.contains(&lower.as_str()) {
            return Err(ChangeError::NotAllowed(lower));
        }
        let rest = rest.trim();
        if rest.is_empty() {
            return Err(ChangeError::MissingArgs(lower.to_uppercase()));
        }
        match lower.as_str() {
            "cmd" => {
                cfg.insert("Cmd".into(), json!(exec_or_shell(rest)));
            }
            "entrypoint" => {
                cfg.insert("Entrypoint".into(), json!(exec_or_shell(rest)));
            }
            "user" => {
                cfg.insert("User".into(), json!(rest));
            }
            "workdir" => {
                cfg.insert("WorkingDir".into(), json!(rest));
            }
            "stopsignal" => {
                cfg.insert("StopSignal".into(), json!(rest));
            }
            "onbuild" => push_array(cfg, "OnBuild", vec![rest.to_string()]),
            "env" => {
                let pairs = key_values(&lower, rest)?;
                let mut env: Vec<String> = cfg
                    .get("Env")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                for (k, v) in pairs {
                    let entry = format!("{k}={v}");
                    match env.iter_mut().find(|e| e.split('=').next() == Some(k.as_str())) {
                        Some(e) => *e = entry,
                        None => env.push(entry),
                    }
                }
                cfg.insert("Env".into(), json!(env));
            }
            "label" => {
                let pairs = key_values(&lower, rest)?;
                let labels = object(cfg, "Labels");
                for (k, v) in pairs {
                    labels.insert(k, json!(v));
                }
                labels.sort_keys();
            }
            "expose" => {
                let ports = object(cfg, "ExposedPorts");
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                    let (num, proto) = p.split_once('/').expect("has a slash");
                    if num.is_empty() || !num.split('-').all(|n| n.parse::<u16>().is_ok()) || !matches!(proto, "tcp" | "udp" | "sctp") {
                        return Err(ChangeError::Syntax { instr: "EXPOSE".into(), msg: format!("invalid port {p}") });
                    }
                    ports.insert(p, json!({}));
                }
                ports.sort_keys();
            }
            "volume" => {
                let vols: Vec<String> = match serde_json::from_str::<Vec<String>>(rest) {
                    Ok(v) if rest.starts_with('[') => v,
                    _ => rest.split_whitespace().map(str::to_string).collect(),
                };
                let map = object(cfg, "Volumes");
                for v in vols {
                    if v.is_empty() {
                        return Err(ChangeError::Syntax { instr: "VOLUME".into(), msg: "volume specified can not be an empty string".into() });
                    }
                    map.insert(v, json!({}));
                }
                map.sort_keys();
            }
            _ => unreachable!("allow-listed above"),
        }
    }
    Ok(())
}

/// A map-valued config field. Callers sort it after inserting: Go writes map keys
/// sorted, so docker's configs (and so their digests) have them in that order.
fn object<'a>(cfg: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    if !cfg.get(key).is_some_and(Value::is_object) {
        cfg.insert(key.into(), json!({}));
    }
    cfg.get_mut(key).and_then(Value::as_object_mut).expect("just made an object")
}

fn push_array(cfg: &mut Map<String, Value>, key: &str, items: Vec<String>) {
    let mut a: Vec<Value> = cfg.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    a.extend(items.into_iter().map(Value::String));
    cfg.insert(key.into(), Value::Array(a));
}

/// JSON array form, else shell form wrapped in `/bin/sh -c` as docker does.
pub fn exec_or_shell(rest: &str) -> Vec<String> {
    if rest.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(rest) {
            return v;
        }
    }
    vec!["/bin/sh".into(), "-c".into(), rest.into()]
}

/// `k=v k2="a b"` or the legacy `k v w` (one pair, the rest is the value).
pub fn key_values(instr: &str, rest: &str) -> Result<Vec<(String, String)>, ChangeError> {
    let words = split_words(rest).map_err(|msg| ChangeError::Syntax { instr: instr.to_uppercase(), msg })?;
    if !words[0].contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace).ok_or_else(|| ChangeError::Syntax {
            instr: instr.to_uppercase(),
            msg: format!("{} must have two arguments", instr.to_uppercase()),
        })?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(ChangeError::Syntax { instr: instr.to_uppercase(), msg: format!("key=value pair expected, got {w:?}") }),
        })
        .collect()
}

/// Splits on unquoted whitespace, removing quotes and backslash escapes.
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (q, '\\') if q != Some('\'') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unmatched quote".into());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_like_docker_import() {
        let mut c = Map::new();
        let ch: Vec<String> = [r#"CMD ["sh"]"#, r#"ENV A=1 B="x y""#, "EXPOSE 80 53/udp", "VOLUME /data", "LABEL a=b", "USER nobody", "WORKDIR /tmp", "ENTRYPOINT /bin/sh -c", "STOPSIGNAL SIGINT"]
            .iter().map(|s| s.to_string()).collect();
        apply(&mut c, &ch).unwrap();
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"Cmd":["sh"],"Env":["A=1","B=x y"],"ExposedPorts":{"53/udp":{},"80/tcp":{}},"Volumes":{"/data":{}},"Labels":{"a":"b"},"User":"nobody","WorkingDir":"/tmp","Entrypoint":["/bin/sh","-c","/bin/sh -c"],"StopSignal":"SIGINT"}"#
        );
    }

    #[test]
    fn rejects_bad_lines() {
        let mut c = Map::new();
        assert_eq!(apply(&mut c, &["RUN echo".into()]).unwrap_err().to_string(), "run is not a valid change command");
        assert_eq!(apply(&mut c, &["FOO bar".into()]).unwrap_err().to_string(), "foo is not a valid change command");
        assert!(apply(&mut c, &["ENV".into()]).is_err());
        assert!(apply(&mut c, &["EXPOSE 99999".into()]).is_err());
        assert!(apply(&mut c, &[r#"ENV A="x"#.into()]).is_err());
    }
}
