//! The step executor: docker's classic builder, one image per instruction.
//!
//! Each instruction starts from the current image and ends with a new one whose parent
//! it is: filesystem steps (RUN, COPY, ADD, WORKDIR) add a layer, the others change the
//! config only (history says `empty_layer`). Before doing a step the cache is asked for
//! an image made by the same step on the same parent.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use strata_engine::{CreateOptions, Engine};
use strata_image::config::{self, CONTAINER_CONFIG_FIELDS};
use strata_image::{Image, Reference};
use strata_store::{Digest, Lease};

use crate::cache::{self, FileHashes};
use crate::context::Context;
use crate::copy::{self, CopyJob, Source};
use crate::instructions::{self, CmdLine, CopyArgs, Health, Instruction, Program, Stage, Step};
use crate::parser;
use crate::shell::Lex;
use crate::BuildError;

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Build args docker allows without an ARG (only when given with --build-arg).
const BUILTIN_ARGS: &[&str] = &["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"];

/// What the build writes, in order: docker's JSON stream messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `{"stream": ...}`: a line of build output (stderr of RUN comes colored, as
    /// docker's classic builder sends it).
    Stream(String),
    /// `{"aux": {"ID": ...}}`: the image a stage produced.
    Aux(String),
}

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub tags: Vec<Reference>,
    /// `--build-arg K=V` (Some) or `--build-arg K` with no value in the environment (None).
    pub build_args: BTreeMap<String, Option<String>>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub labels: BTreeMap<String, String>,
    /// Remove intermediate containers of successful steps (docker's `--rm`, default on).
    pub remove: bool,
    /// Remove them after failed steps too.
    pub force_rm: bool,
}

/// A build that finished: the image and the names given to it.
#[derive(Debug, Clone)]
pub struct Built {
    pub id: Digest,
}

pub struct Builder<'e> {
    engine: &'e Engine,
}

/// The state of the stage being built (docker's dispatchState).
#[derive(Clone)]
struct State {
    image: Option<Digest>,
    top: Option<Digest>,
    config: Map<String, Value>,
    history: Vec<Value>,
    diff_ids: Vec<String>,
    arch: String,
    os: String,
    variant: Option<String>,
    author: String,
    cmd_set: bool,
    /// ARGs declared in this stage, with their (expanded) defaults.
    args: Vec<(String, Option<String>)>,
}

impl State {
    fn scratch() -> State {
        let mut config = Map::new();
        config.insert("Env".into(), json!([DEFAULT_PATH]));
        State {
            image: None,
            top: None,
            config,
            history: Vec::new(),
            diff_ids: Vec::new(),
            arch: strata_image::go_arch().to_string(),
            os: "linux".into(),
            variant: None,
            author: String::new(),
            cmd_set: false,
            args: Vec::new(),
        }
    }

    fn load(&mut self, img: &Image) {
        let c = &img.config;
        self.image = Some(img.id.clone());
        self.top = img.top_layer.clone();
        self.config = c.container_config();
        self.history = c.history().into_iter().map(Value::Object).collect();
        self.diff_ids = c.diff_ids().unwrap_or_default().iter().map(|d| d.to_string()).collect();
        self.arch = match c.str_field("architecture") {
            "" => strata_image::go_arch().to_string(),
            a => a.to_string(),
        };
        self.os = match c.str_field("os") {
            "" => "linux".into(),
            o => o.to_string(),
        };
        self.variant = Some(c.str_field("variant").to_string()).filter(|v| !v.is_empty());
        self.author = c.str_field("author").to_string();
    }

    fn env(&self) -> Vec<String> {
        str_list(self.config.get("Env"))
    }

    fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.env();
        let entry = format!("{key}={value}");
        match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
        self.config.insert("Env".into(), json!(env));
    }

    fn shell(&self) -> Vec<String> {
        let s = str_list(self.config.get("Shell"));
        if s.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            s
        }
    }

    fn workdir(&self) -> String {
        self.config.get("WorkingDir").and_then(Value::as_str).unwrap_or("").to_string()
    }
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Build args: what --build-arg gave, what the Dockerfile declared.
struct BuildArgs {
    given: BTreeMap<String, Option<String>>,
    meta: Vec<(String, Option<String>)>,
    used: std::collections::BTreeSet<String>,
}

impl BuildArgs {
    fn given_value(&self, k: &str) -> Option<String> {
        self.given.get(k).cloned().flatten()
    }

    fn value(&self, k: &str, default: &Option<String>) -> Option<String> {
        if let Some(v) = self.given_value(k) {
            return Some(v);
        }
        if default.is_some() {
            return default.clone();
        }
        self.meta.iter().rev().find(|(m, _)| m == k).and_then(|(_, v)| v.clone())
    }

    /// The args a step sees (`KEY=value`), less those ENV sets.
    fn allowed(&self, st: &State) -> Vec<(String, String)> {
        let env = st.env();
        let in_env = |k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, d) in &st.args {
            if let Some(v) = self.value(k, d) {
                if !in_env(k) && !out.iter().any(|(x, _)| x == k) {
                    out.push((k.clone(), v));
                }
            }
        }
        for b in BUILTIN_ARGS {
            if let Some(v) = self.given_value(b) {
                if !in_env(b) && !out.iter().any(|(x, _)| x == b) {
                    out.push((b.to_string(), v));
                }
            }
        }
        out
    }
}

fn short(d: &Digest) -> String {
    d.hex()[..12].to_string()
}

/// Go's `%q` of a string.
fn go_quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => o.push_str(&format!("\\x{:02x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quote_list(v: &[String]) -> String {
    format!("[{}]", v.iter().map(|s| go_quote(s)).collect::<Vec<_>>().join(" "))
}

/// Go's time.Duration String().
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let mut u = ns.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        let (unit, div) = if u < 1_000 { ("ns", 1) } else if u < 1_000_000 { ("µs", 1_000) } else { ("ms", 1_000_000) };
        out.push_str(&trim_frac(u as f64 / div as f64));
        out.push_str(unit);
    } else {
        let h = u / 3_600_000_000_000;
        u -= h * 3_600_000_000_000;
        let m = u / 60_000_000_000;
        u -= m * 60_000_000_000;
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&trim_frac(u as f64 / 1e9));
        out.push('s');
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

fn trim_frac(x: f64) -> String {
    let s = format!("{x:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// `HEALTHCHECK %q` of docker's HealthConfig struct.
fn health_comment(h: &Health, test: &[String]) -> String {
    format!(
        "HEALTHCHECK &{{{} {} {} {} {} '\\x{:02x}'}}",
        go_quote_list(test),
        go_quote(&go_duration(h.interval.unwrap_or(0))),
        go_quote(&go_duration(h.timeout.unwrap_or(0))),
        go_quote(&go_duration(h.start_period.unwrap_or(0))),
        go_quote(&go_duration(h.start_interval.unwrap_or(0))),
        h.retries.unwrap_or(0)
    )
}

fn nop(comment: &str) -> String {
    format!("/bin/sh -c #(nop)  {comment}")
}

/// Cleans an absolute path as Go's filepath.Clean, keeping a trailing slash.
fn join_dest(workdir: &str, dest: &str) -> String {
    if dest.starts_with('/') {
        return dest.to_string();
    }
    let base = if workdir.is_empty() { "/" } else { workdir };
    let mut j = crate::ignore::clean(&format!("{base}/{dest}"));
    if dest.ends_with('/') && !j.ends_with('/') {
        j.push('/');
    }
    j
}

impl<'e> Builder<'e> {
    pub fn new(engine: &'e Engine) -> Result<Builder<'e>, BuildError> {
        cache::migrate(engine.store())?;
        Ok(Builder { engine })
    }

    /// Builds `dockerfile` over `ctx`. Events go to `out` as they happen; `cancelled`
    /// is polled between steps and while a RUN runs.
    pub fn build(
        &self,
        ctx: &Context,
        dockerfile: &str,
        opts: &BuildOptions,
        out: &mut dyn FnMut(Event),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Built, BuildError> {
        let df = parser::parse(dockerfile)?;
        let mut prog = instructions::program(&df)?;
        if let Some(t) = &opts.target {
            let t = t.to_ascii_lowercase();
            let Some(i) = prog.stages.iter().position(|s| s.name.as_deref() == Some(t.as_str())) else {
                return Err(BuildError::Build(format!("failed to reach build target {t} in Dockerfile")));
            };
            prog.stages.truncate(i + 1);
        }
        if let Some(last) = prog.stages.last_mut() {
            for (k, v) in &opts.labels {
                last.steps.push(Step { inst: Instruction::Label(vec![(k.clone(), v.clone())]), original: format!("LABEL {k}={v}"), line: 0 });
            }
        }
        for w in &df.warnings {
            out(Event::Stream(format!("{w}\n")));
        }
        let lease = self.engine.store().lease()?;
        let mut run = Run {
            engine: self.engine,
            ctx,
            opts,
            lease: &lease,
            lex: Lex::new(prog.escape),
            out,
            cancelled,
            hashes: FileHashes::load(self.engine.store())?,
            args: BuildArgs { given: opts.build_args.clone(), meta: Vec::new(), used: Default::default() },
            stages: Vec::new(),
            step: 0,
            total: prog.meta_args.len() + prog.stages.iter().map(|s| 1 + s.steps.len()).sum::<usize>(),
            empty_root: None,
        };
        let res = run.program(&prog);
        let _ = run.hashes.save();
        let id = res?;
        Ok(Built { id })
    }
}

struct Run<'a, 'e> {
    engine: &'e Engine,
    ctx: &'a Context,
    opts: &'a BuildOptions,
    lease: &'a Lease,
    lex: Lex,
    out: &'a mut dyn FnMut(Event),
    cancelled: &'a dyn Fn() -> bool,
    hashes: FileHashes<'e>,
    args: BuildArgs,
    /// Finished stages: (name, final image).
    stages: Vec<(Option<String>, Option<Digest>)>,
    step: usize,
    total: usize,
    empty_root: Option<PathBuf>,
}

impl Run<'_, '_> {
    fn say(&mut self, s: impl Into<String>) {
        (self.out)(Event::Stream(s.into()))
    }

    fn print_step(&mut self, original: &str) {
        self.step += 1;
        let s = format!("Step {}/{} : {original}\n", self.step, self.total);
        self.say(s);
    }

    fn program(&mut self, prog: &Program) -> Result<Digest, BuildError> {
        for m in &prog.meta_args {
            self.print_step(&m.original);
            if let Instruction::Arg(pairs) = &m.inst {
                for (k, v) in pairs {
                    let env: Vec<String> = self.args.meta.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}"))).collect();
                    let v = match v {
                        Some(v) => Some(self.lex.process_word(v, &env).map_err(|e| BuildError::at(m.line, e.0))?),
                        None => None,
                    };
                    let v = self.args.given_value(k).or(v);
                    self.args.used.insert(k.clone());
                    self.args.meta.push((k.clone(), v));
                }
            }
        }
        let mut last = None;
        for (i, stage) in prog.stages.iter().enumerate() {
            if (self.cancelled)() {
                return Err(BuildError::Cancelled);
            }
            let st = self.stage(stage)?;
            if let Some(id) = &st.image {
                (self.out)(Event::Aux(id.to_string()));
            }
            self.stages.push((stage.name.clone(), st.image.clone()));
            if i == prog.stages.len() - 1 {
                last = st.image;
            }
        }
        let unused: Vec<&String> = self.opts.build_args.keys().filter(|k| !self.args.used.contains(*k) && !BUILTIN_ARGS.contains(&k.as_str())).collect();
        if !unused.is_empty() {
            let list = unused.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
            self.say(format!("[Warning] One or more build-args [{list}] were not consumed\n"));
        }
        last.ok_or_else(|| BuildError::Build("No image was generated. Is your Dockerfile empty?".into()))
    }

    fn stage_image(&self, name: &str) -> Option<Option<Digest>> {
        let lname = name.to_ascii_lowercase();
        if let Some((_, id)) = self.stages.iter().find(|(n, _)| n.as_deref() == Some(lname.as_str())) {
            return Some(id.clone());
        }
        name.parse::<usize>().ok().and_then(|i| self.stages.get(i).map(|(_, id)| id.clone()))
    }

    fn stage(&mut self, stage: &Stage) -> Result<State, BuildError> {
        self.print_step(&stage.original);
        let meta_env: Vec<String> = self.args.meta.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}"))).collect();
        let base = self.lex.process_word(&stage.base, &meta_env).map_err(|e| BuildError::at(stage.line, e.0))?;
        if let Some(p) = &stage.platform {
            self.lex.process_word(p, &meta_env).map_err(|e| BuildError::at(stage.line, e.0))?;
        }
        let mut st = State::scratch();
        if base.eq_ignore_ascii_case("scratch") {
            self.say(" ---> \n");
        } else {
            let img = match self.stage_image(&base) {
                Some(Some(id)) if stage.name.as_deref() != Some(base.to_ascii_lowercase().as_str()) => self.engine.images().get(&id)?,
                _ => {
                    if stage.name.as_deref() == Some(base.to_ascii_lowercase().as_str()) {
                        return Err(BuildError::at(stage.line, format!("circular dependency detected on stage: {}", base.to_ascii_lowercase())));
                    }
                    self.engine.images().resolve(&base).map_err(|e| BuildError::Build(e.to_string()))?
                }
            };
            st.load(&img);
            if !st.env().iter().any(|e| e.starts_with("PATH=")) {
                let mut env = st.env();
                env.insert(0, DEFAULT_PATH.into());
                st.config.insert("Env".into(), json!(env));
            }
            let triggers = str_list(st.config.get("OnBuild"));
            st.config.insert("OnBuild".into(), Value::Null);
            if !triggers.is_empty() {
                let n = triggers.len();
                self.say(format!("# Executing {n} build trigger{}\n", if n == 1 { "" } else { "s" }));
                for t in &triggers {
                    let node = parser::node_from_line(t, self.lex.escape).map_err(|m| BuildError::Build(format!("failed to parse build trigger {t:?}: {m}")))?;
                    let inst = instructions::instruction(&node).map_err(|e| BuildError::Build(e.msg))?;
                    let step = Step { inst, original: t.clone(), line: stage.line };
                    self.dispatch(&mut st, &step)?;
                }
            }
            let id = st.image.clone().expect("an image was loaded");
            self.say(format!(" ---> {}\n", short(&id)));
        }
        for step in &stage.steps {
            if (self.cancelled)() {
                self.say("Build cancelled\n");
                return Err(BuildError::Cancelled);
            }
            self.print_step(&step.original);
            self.dispatch(&mut st, step)?;
            let id = st.image.clone().map(|d| short(&d)).unwrap_or_default();
            self.say(format!(" ---> {id}\n"));
        }
        Ok(st)
    }

    fn expand(&self, st: &State, word: &str, line: usize) -> Result<String, BuildError> {
        let mut env = st.env();
        env.extend(self.args.allowed(st).into_iter().map(|(k, v)| format!("{k}={v}")));
        self.lex.process_word(word, &env).map_err(|e| BuildError::at(line, format!("failed to process {}: {}", go_quote(word), e.0)))
    }

    fn dispatch(&mut self, st: &mut State, step: &Step) -> Result<(), BuildError> {
        let line = step.line;
        match &step.inst {
            Instruction::Env(pairs) => {
                let mut expanded = Vec::new();
                for (k, v) in pairs {
                    expanded.push((self.expand(st, k, line)?, self.expand(st, v, line)?));
                }
                for (k, v) in &expanded {
                    st.set_env(k, v);
                }
                let comment = format!("ENV {}", expanded.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
                self.commit_meta(st, &nop(&comment))
            }
            Instruction::Label(pairs) => {
                let mut expanded = Vec::new();
                for (k, v) in pairs {
                    expanded.push((self.expand(st, k, line)?, self.expand(st, v, line)?));
                }
                let mut labels = st.config.get("Labels").and_then(Value::as_object).cloned().unwrap_or_default();
                for (k, v) in &expanded {
                    labels.insert(k.clone(), json!(v));
                }
                labels.sort_keys();
                st.config.insert("Labels".into(), Value::Object(labels));
                let comment = format!("LABEL {}", expanded.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
                self.commit_meta(st, &nop(&comment))
            }
            Instruction::Arg(pairs) => {
                let mut parts = Vec::new();
                for (k, v) in pairs {
                    let v = match v {
                        Some(v) => Some(self.expand(st, v, line)?),
                        None => None,
                    };
                    parts.push(match &v {
                        Some(v) => format!("{k}={v}"),
                        None => k.clone(),
                    });
                    self.args.used.insert(k.clone());
                    st.args.retain(|(x, _)| x != k);
                    st.args.push((k.clone(), v));
                }
                self.commit_meta(st, &nop(&format!("ARG {}", parts.join(" "))))
            }
            Instruction::User(u) => {
                let u = self.expand(st, u, line)?;
                st.config.insert("User".into(), json!(u));
                self.commit_meta(st, &nop(&format!("USER {u}")))
            }
            Instruction::StopSignal(s) => {
                let s = self.expand(st, s, line)?;
                if strata_engine::containers::signal_number(&s).is_none() {
                    return Err(BuildError::Build(format!("Invalid signal: {s}")));
                }
                st.config.insert("StopSignal".into(), json!(s));
                self.commit_meta(st, &nop(&format!("STOPSIGNAL {s}")))
            }
            Instruction::Expose(ports) => {
                let mut given = Vec::new();
                let mut map = st.config.get("ExposedPorts").and_then(Value::as_object).cloned().unwrap_or_default();
                for p in ports {
                    let p = self.expand(st, p, line)?;
                    let full = if p.contains('/') { p.clone() } else { format!("{p}/tcp") };
                    let (num, proto) = full.split_once('/').unwrap_or((&full, "tcp"));
                    let ok_num = !num.is_empty() && num.split('-').all(|n| n.parse::<u16>().is_ok());
                    if !ok_num || !matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp") {
                        return Err(BuildError::Build(format!("Invalid containerPort: {num}")));
                    }
                    map.insert(format!("{num}/{}", proto.to_ascii_lowercase()), json!({}));
                    given.push(p);
                }
                map.sort_keys();
                st.config.insert("ExposedPorts".into(), Value::Object(map));
                given.sort();
                self.commit_meta(st, &nop(&format!("EXPOSE {}", given.join(" "))))
            }
            Instruction::Volume(vols) => {
                let mut map = st.config.get("Volumes").and_then(Value::as_object).cloned().unwrap_or_default();
                let mut list = Vec::new();
                for v in vols {
                    let v = self.expand(st, v, line)?;
                    if v.trim().is_empty() {
                        return Err(BuildError::Build("VOLUME specified can not be an empty string".into()));
                    }
                    map.insert(v.clone(), json!({}));
                    list.push(v);
                }
                map.sort_keys();
                st.config.insert("Volumes".into(), Value::Object(map));
                self.commit_meta(st, &nop(&format!("VOLUME [{}]", list.join(" "))))
            }
            Instruction::Shell(s) => {
                st.config.insert("Shell".into(), json!(s));
                self.commit_meta(st, &nop(&format!("SHELL [{}]", s.join(" "))))
            }
            Instruction::Cmd(c) => {
                let v = self.cmd_value(st, c);
                st.config.insert("Cmd".into(), json!(v));
                st.cmd_set = true;
                self.commit_meta(st, &nop(&format!("CMD {}", go_quote_list(&v))))
            }
            Instruction::Entrypoint(c) => {
                let v = self.cmd_value(st, c);
                st.config.insert("Entrypoint".into(), json!(v));
                if !st.cmd_set {
                    st.config.insert("Cmd".into(), Value::Null);
                }
                self.commit_meta(st, &nop(&format!("ENTRYPOINT {}", go_quote_list(&v))))
            }
            Instruction::Healthcheck(h) => {
                let test: Vec<String> = match &h.test {
                    None => vec!["NONE".into()],
                    Some(CmdLine::Shell(s)) => vec!["CMD-SHELL".into(), s.clone()],
                    Some(CmdLine::Exec(v)) => std::iter::once("CMD".to_string()).chain(v.iter().cloned()).collect(),
                };
                let mut m = Map::new();
                m.insert("Test".into(), json!(test));
                for (k, v) in [("Interval", h.interval), ("Timeout", h.timeout), ("StartPeriod", h.start_period), ("StartInterval", h.start_interval), ("Retries", h.retries)] {
                    if let Some(v) = v.filter(|v| *v != 0) {
                        m.insert(k.into(), json!(v));
                    }
                }
                st.config.insert("Healthcheck".into(), Value::Object(m));
                self.commit_meta(st, &nop(&health_comment(h, &test)))
            }
            Instruction::OnBuild(t) => {
                let mut v = str_list(st.config.get("OnBuild"));
                v.push(t.clone());
                st.config.insert("OnBuild".into(), json!(v));
                self.commit_meta(st, &nop(&format!("ONBUILD {t}")))
            }
            Instruction::Maintainer(m) => {
                st.author = m.clone();
                self.commit_meta(st, &nop(&format!("MAINTAINER {m}")))
            }
            Instruction::Workdir(w) => {
                let w = self.expand(st, w, line)?;
                let cur = st.workdir();
                let abs = if w.starts_with('/') { crate::ignore::clean(&w) } else { crate::ignore::clean(&format!("{}/{w}", if cur.is_empty() { "/" } else { &cur })) };
                st.config.insert("WorkingDir".into(), json!(abs));
                let created_by = format!("/bin/sh -c #(nop) WORKDIR {abs}");
                let key = self.key(st, &created_by, "");
                if self.try_cache(st, &key)? {
                    return Ok(());
                }
                let dir = abs.clone();
                let layer = self.in_snapshot(st, &[], move |root, _| {
                    let job = CopyJob { rootfs: root, dest: dir.clone(), owner: copy::Owner { uid: 0, gid: 0 }, chmod: None, extract: false };
                    job.mkdir_dir(&dir)
                })?;
                self.commit(st, &created_by, layer, &key)
            }
            Instruction::Run { cmd, heredocs } => self.run(st, cmd, heredocs, line),
            Instruction::Copy(c) => self.copy(st, c, line),
        }
    }

    fn cmd_value(&self, st: &State, c: &CmdLine) -> Vec<String> {
        match c {
            CmdLine::Exec(v) => v.clone(),
            CmdLine::Shell(s) => {
                let mut v = st.shell();
                v.push(s.clone());
                v
            }
        }
    }

    /// The cache key of a step about to be made on `st`'s image.
    fn key(&self, st: &State, created_by: &str, extra: &str) -> String {
        let mut cfg = st.config.clone();
        cfg.insert("Image".into(), json!(st.image.as_ref().map(|d| d.to_string()).unwrap_or_default()));
        let shaped = config::shape(&cfg, CONTAINER_CONFIG_FIELDS);
        let text = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            st.image.as_ref().map(|d| d.to_string()).unwrap_or_default(),
            created_by,
            Value::Object(shaped),
            st.author,
            st.arch,
            extra
        );
        Digest::sha256_of(text.as_bytes()).to_string()
    }

    /// Uses a cached image for this step if there is one.
    fn try_cache(&mut self, st: &mut State, key: &str) -> Result<bool, BuildError> {
        if self.opts.no_cache {
            return Ok(false);
        }
        let Some(id) = cache::lookup(self.engine.store(), key)? else { return Ok(false) };
        let Ok(img) = self.engine.images().get(&id) else { return Ok(false) };
        if img.parent.as_deref() != st.image.as_ref().map(|d| d.to_string()).as_deref() {
            return Ok(false);
        }
        let keep = (st.cmd_set, std::mem::take(&mut st.args));
        st.load(&img);
        (st.cmd_set, st.args) = keep;
        self.say(" ---> Using cache\n");
        Ok(true)
    }

    fn commit_meta(&mut self, st: &mut State, created_by: &str) -> Result<(), BuildError> {
        let key = self.key(st, created_by, "");
        if self.try_cache(st, &key)? {
            return Ok(());
        }
        self.commit(st, created_by, None, &key)
    }

    /// Records the image of a step: the config as it is now, history with this step, the
    /// new layer if any; parent is the image the step started from.
    fn commit(&mut self, st: &mut State, created_by: &str, layer: Option<strata_image::Layer>, key: &str) -> Result<(), BuildError> {
        let parent = st.image.clone();
        st.config.insert("Image".into(), json!(parent.as_ref().map(|d| d.to_string()).unwrap_or_default()));
        let created = strata_store::now_rfc3339();
        let mut h = Map::new();
        h.insert("created".into(), json!(created));
        if !st.author.is_empty() {
            h.insert("author".into(), json!(st.author));
        }
        h.insert("created_by".into(), json!(created_by));
        if layer.is_none() {
            h.insert("empty_layer".into(), json!(true));
        }
        st.history.push(Value::Object(h));
        if let Some(l) = &layer {
            st.diff_ids.push(l.diff_id.to_string());
            st.top = Some(l.chain_id.clone());
        }
        let mut top = Map::new();
        top.insert("architecture".into(), json!(st.arch));
        if !st.author.is_empty() {
            top.insert("author".into(), json!(st.author));
        }
        top.insert("config".into(), Value::Object(config::shape(&st.config, CONTAINER_CONFIG_FIELDS)));
        top.insert("created".into(), json!(created));
        top.insert("history".into(), Value::Array(st.history.clone()));
        top.insert("os".into(), json!(st.os));
        top.insert("rootfs".into(), json!({ "type": "layers", "diff_ids": st.diff_ids }));
        if let Some(v) = &st.variant {
            top.insert("variant".into(), json!(v));
        }
        let bytes = config::to_bytes(top);
        let (id, _) = self.engine.images().create(self.lease, &bytes, st.top.as_ref(), parent.as_ref(), &[])?;
        cache::store(self.engine.store(), key, &id)?;
        st.image = Some(id);
        Ok(())
    }

    /// Prepares a snapshot over the current top layer, runs `f` on its mounted root
    /// (and the roots of `extra` committed snapshots) in a private mount namespace, and
    /// seals it as a layer.
    fn in_snapshot(
        &mut self,
        st: &State,
        extra: &[(String, PathBuf)],
        f: impl FnOnce(std::os::fd::BorrowedFd<'_>, &[PathBuf]) -> Result<(), String>,
    ) -> Result<Option<strata_image::Layer>, BuildError> {
        let key = format!("build-{}", self.lease.resource_name());
        let top = st.top.as_ref().map(|t| t.to_string());
        self.engine.snapshotter().prepare(&key, top.as_deref(), Some(self.lease))?;
        let res = (|| -> Result<(), BuildError> {
            let dir = self.lease.tmp_dir()?;
            let target = dir.join("rootfs");
            std::fs::create_dir(&target).map_err(|e| BuildError::Build(format!("create {}: {e}", target.display())))?;
            let mut mounts = vec![(key.clone(), target.clone())];
            let mut extra_dirs = Vec::new();
            for (i, (k, _)) in extra.iter().enumerate() {
                let t = dir.join(format!("from-{i}"));
                std::fs::create_dir(&t).map_err(|e| BuildError::Build(format!("create {}: {e}", t.display())))?;
                mounts.push((k.clone(), t.clone()));
                extra_dirs.push(t);
            }
            // A source with no layers (an empty stage) is just an empty directory.
            for (i, (k, p)) in extra.iter().enumerate() {
                if k.is_empty() {
                    extra_dirs[i] = p.clone();
                }
            }
            mounts.retain(|(k, _)| !k.is_empty());
            let t0 = std::time::Instant::now();
            let r = self.engine.with_snapshots_mounted(&mounts, || {
                let root = copy::open_root(&target)?;
                f(root.as_fd(), &extra_dirs)
            });
            let _ = strata_store::fsutil::remove_all(&dir);
            timing("fill snapshot", t0);
            r.map_err(BuildError::Build)
        })();
        if let Err(e) = res {
            let _ = self.engine.snapshotter().remove(&key);
            return Err(e);
        }
        let t0 = std::time::Instant::now();
        let layer = self.engine.images().commit_snapshot(self.lease, &key, st.top.as_ref())?;
        timing("seal layer", t0);
        Ok(layer)
    }

    fn empty_dir(&mut self) -> Result<PathBuf, BuildError> {
        if let Some(p) = &self.empty_root {
            return Ok(p.clone());
        }
        let p = self.lease.tmp_dir()?;
        self.empty_root = Some(p.clone());
        Ok(p)
    }

    fn copy(&mut self, st: &mut State, c: &CopyArgs, line: usize) -> Result<(), BuildError> {
        let name = if c.add { "ADD" } else { "COPY" };
        let failed = |m: String| BuildError::Build(format!("{name} failed: {m}"));
        let mut sources = Vec::new();
        for s in &c.sources {
            sources.push(self.expand(st, s, line)?);
        }
        if sources.iter().any(|s| s.starts_with("http://") || s.starts_with("https://")) {
            if !c.add {
                return Err(failed("source can't be a URL for COPY".into()));
            }
            return Err(failed("remote URLs cannot be fetched: this engine has no network access for builds".into()));
        }
        let dest_raw = self.expand(st, &c.dest, line)?;
        let dest = join_dest(&st.workdir(), &dest_raw);
        let chown = match &c.chown {
            Some(s) => Some(self.expand(st, s, line)?),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(s) => {
                let s = self.expand(st, s, line)?;
                Some(u32::from_str_radix(&s, 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| BuildError::Build(format!("invalid chmod parameter: {s}")))?)
            }
            None => None,
        };
        // Where the sources come from: the context, a stage, or an image.
        let mut from_snapshot: Option<(String, PathBuf)> = None;
        let mut from_id: Option<String> = None;
        let ctx_root: PathBuf = match &c.from {
            Some(f) => {
                let f = self.expand(st, f, line)?;
                let id = match self.stage_image(&f) {
                    Some(id) => id,
                    None => Some(self.engine.images().resolve(&f).map_err(|e| BuildError::Build(format!("invalid from flag value {f}: {e}")))?.id),
                };
                from_id = Some(id.as_ref().map(|d| d.to_string()).unwrap_or_default());
                let top = match &id {
                    Some(d) => self.engine.images().get(d)?.top_layer,
                    None => None,
                };
                let empty = self.empty_dir()?;
                from_snapshot = Some((top.map(|t| t.to_string()).unwrap_or_default(), empty.clone()));
                empty
            }
            None => match self.ctx.root() {
                Some(r) => r.to_path_buf(),
                None => self.empty_dir()?,
            },
        };
        let context_source = c.from.is_none();
        let ignore = if context_source { self.ctx.ignore.clone() } else { Default::default() };

        // The part of the key that names the content.
        let t0 = std::time::Instant::now();
        let mut hashes: Vec<String> = Vec::new();
        if context_source {
            let root = copy::open_root(&ctx_root).map_err(failed)?;
            if !sources.is_empty() {
                let resolved = copy::resolve_sources(root.as_fd(), &sources, &ignore, true).map_err(failed)?;
                for s in &resolved {
                    hashes.push(copy::hash_source(root.as_fd(), s, &ignore, &mut self.hashes).map_err(failed)?);
                }
                if resolved.len() + c.heredocs.len() > 1 && !dest.ends_with('/') {
                    return Err(BuildError::Build(format!("When using {name} with more than one source file, the destination must be a directory and end with a /")));
                }
            }
        } else {
            hashes.push(format!("file:{}", Digest::sha256_of(format!("{}\n{}", from_id.clone().unwrap_or_default(), sources.join("\n")).as_bytes()).hex()));
        }
        let mut inline = Vec::new();
        for h in &c.heredocs {
            let text = if h.expand { self.expand_heredoc(st, &h.text()) } else { h.text() };
            hashes.push(format!("file:{}", Digest::sha256_of(text.as_bytes()).hex()));
            inline.push((h.name.clone(), text));
        }
        timing("hash sources", t0);
        let src_hash = if hashes.len() == 1 { hashes[0].clone() } else { format!("multi:{}", Digest::sha256_of(hashes.join(",").as_bytes()).hex()) };
        let chown_comment = chown.as_ref().map(|c| format!("--chown={c}")).unwrap_or_default();
        let created_by = format!("/bin/sh -c #(nop) {name} {chown_comment}{src_hash} in {dest_raw} ");
        let key = self.key(st, &created_by, &format!("{chmod:?} {dest}"));
        if self.try_cache(st, &key)? {
            return Ok(());
        }
        let extra: Vec<(String, PathBuf)> = from_snapshot.into_iter().collect();
        let add = c.add;
        let layer = self.in_snapshot(st, &extra, move |root, extra_dirs| {
            let owner = match &chown {
                Some(spec) => copy::resolve_chown(root, spec)?,
                None => copy::Owner { uid: 0, gid: 0 },
            };
            let src_dir = extra_dirs.first().cloned().unwrap_or(ctx_root.clone());
            let src_root = copy::open_root(&src_dir)?;
            let job = CopyJob { rootfs: root, dest: dest.clone(), owner, chmod, extract: add && context_source };
            if !sources.is_empty() {
                let resolved: Vec<Source> = copy::resolve_sources(src_root.as_fd(), &sources, &ignore, context_source)?;
                if resolved.len() + inline.len() > 1 && !dest.ends_with('/') {
                    return Err(format!("When using {name} with more than one source file, the destination must be a directory and end with a /"));
                }
                for s in &resolved {
                    job.copy(src_root.as_fd(), s, &ignore, "")?;
                }
            }
            for (n, text) in &inline {
                job.write_inline(n, text.as_bytes())?;
            }
            Ok(())
        })
        .map_err(|e| match e {
            BuildError::Build(m) if !m.starts_with("When using") => failed(m),
            e => e,
        })?;
        self.commit(st, &created_by, layer, &key)
    }

    /// Heredoc content with variables expanded and everything else (quotes, escapes)
    /// left as written.
    fn expand_heredoc(&self, st: &State, text: &str) -> String {
        let mut env = st.env();
        env.extend(self.args.allowed(st).into_iter().map(|(k, v)| format!("{k}={v}")));
        let mut out = String::new();
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == self.lex.escape && chars.get(i + 1) == Some(&'$') {
                out.push('$');
                i += 2;
                continue;
            }
            if c == '$' {
                // The variable reference alone goes through the lexer.
                let start = i;
                let mut j = i + 1;
                if chars.get(j) == Some(&'{') {
                    let mut depth = 0;
                    while j < chars.len() {
                        if chars[j] == '{' {
                            depth += 1;
                        } else if chars[j] == '}' {
                            depth -= 1;
                            if depth == 0 {
                                j += 1;
                                break;
                            }
                        }
                        j += 1;
                    }
                } else {
                    while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                        j += 1;
                    }
                }
                let word: String = chars[start..j].iter().collect();
                match self.lex.process_word(&word, &env) {
                    Ok(v) => out.push_str(&v),
                    Err(_) => out.push_str(&word),
                }
                i = j;
                continue;
            }
            out.push(c);
            i += 1;
        }
        out
    }

    fn run(&mut self, st: &mut State, cmd: &CmdLine, heredocs: &[parser::Heredoc], _line: usize) -> Result<(), BuildError> {
        let shell = st.shell();
        let mut binds = Vec::new();
        let mut script_dir = None;
        let argv: Vec<String> = match cmd {
            CmdLine::Exec(v) => v.clone(),
            CmdLine::Shell(s) if !heredocs.is_empty() => {
                let single = s.trim().starts_with("<<") && !s.trim().contains(char::is_whitespace) && heredocs.len() == 1;
                if single && heredocs[0].text().starts_with("#!") {
                    // A script with its own interpreter: run the file itself.
                    let dir = self.lease.tmp_dir()?;
                    let f = dir.join(&heredocs[0].name);
                    std::fs::write(&f, heredocs[0].text()).map_err(|e| BuildError::Build(format!("write {}: {e}", f.display())))?;
                    std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&f).map_err(|e| BuildError::Build(e.to_string()))?.permissions(), 0o755);
                    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(|e| BuildError::Build(e.to_string()))?;
                    let inside = format!("/dev/pipes/{}", heredocs[0].name);
                    binds.push(format!("{}:{inside}:ro", f.display()));
                    script_dir = Some(dir);
                    vec![inside]
                } else if single {
                    let mut v = shell.clone();
                    v.push(heredocs[0].text());
                    v
                } else {
                    let mut full = s.clone();
                    for h in heredocs {
                        full.push('\n');
                        full.push_str(&h.content);
                        full.push_str(&h.name);
                    }
                    let mut v = shell.clone();
                    v.push(full);
                    v
                }
            }
            CmdLine::Shell(s) => {
                let mut v = shell.clone();
                v.push(s.clone());
                v
            }
        };
        let args = self.args.allowed(st);
        let shown: Vec<(String, String)> = args.iter().filter(|(k, _)| !BUILTIN_ARGS.contains(&k.as_str()) || st.args.iter().any(|(a, _)| a == k)).cloned().collect();
        let mut save = argv.clone();
        if !shown.is_empty() {
            let mut kv: Vec<String> = shown.iter().map(|(k, v)| format!("{k}={v}")).collect();
            kv.sort();
            let mut pre = vec![format!("|{}", kv.len())];
            pre.extend(kv);
            pre.extend(save);
            save = pre;
        }
        let created_by = save.join(" ");
        let key = self.key(st, &created_by, &format!("{binds:?}"));
        if self.try_cache(st, &key)? {
            return Ok(());
        }
        let image = st.image.clone().ok_or_else(|| BuildError::Build("Please provide a source image with `from` prior to run".into()))?;
        let mut env = st.env();
        env.extend(args.iter().map(|(k, v)| format!("{k}={v}")));
        let o = CreateOptions {
            image: image.to_string(),
            cmd: argv.clone(),
            entrypoint: Some(String::new()),
            env,
            workdir: Some(st.workdir()).filter(|w| !w.is_empty()),
            user: Some(st.config.get("User").and_then(Value::as_str).unwrap_or("").to_string()).filter(|u| !u.is_empty()),
            attach_stdout: true,
            attach_stderr: true,
            binds,
            lease: Some(self.lease.id().to_string()),
            ..Default::default()
        };
        let c = self.engine.create_container(&o)?;
        self.say(format!(" ---> Running in {}\n", &c.id[..12]));
        let out = &mut *self.out;
        let mut sink = |kind: u8, data: &[u8]| {
            let text = String::from_utf8_lossy(data).into_owned();
            if kind == strata_runtime_stderr() {
                out(Event::Stream(format!("\u{1b}[91m{text}\u{1b}[0m")));
            } else {
                out(Event::Stream(text));
            }
        };
        let cancelled = self.cancelled;
        let code = self.engine.run_to_exit(&c, &mut sink, cancelled);
        if let Some(d) = script_dir {
            let _ = strata_store::fsutil::remove_all(&d);
        }
        let remove = |b: &mut Self| -> Result<(), BuildError> {
            b.engine.remove_container(&c.id, true, true)?;
            Ok(())
        };
        let code = match code {
            Ok(c) => c,
            Err(e) => {
                let _ = remove(self);
                return Err(e.into());
            }
        };
        if (self.cancelled)() {
            let _ = remove(self);
            return Err(BuildError::Cancelled);
        }
        if code != 0 {
            if self.opts.force_rm {
                remove(self)?;
            } else {
                // docker keeps a failed step's container for inspection.
                self.engine.release_container_lease(&c.id)?;
            }
            return Err(BuildError::Run { code, message: format!("The command '{}' returned a non-zero code: {code}", argv.join(" ")) });
        }
        let current = self.engine.container(&c.id)?;
        let layer = self.engine.container_layer(&current, self.lease);
        if self.opts.remove || self.opts.force_rm {
            remove(self)?;
            self.say(format!(" ---> Removed intermediate container {}\n", &c.id[..12]));
        } else {
            self.engine.release_container_lease(&c.id)?;
        }
        let layer = layer?;
        self.commit(st, &created_by, layer, &key)
    }
}

/// `STRATA_BUILD_TIMING=1` prints how long the filesystem phases of steps take (bench/).
fn timing(what: &str, since: std::time::Instant) {
    if std::env::var_os("STRATA_BUILD_TIMING").is_some() {
        eprintln!("[timing] {what}: {:.3}s", since.elapsed().as_secs_f64());
    }
}

/// The stream kind of stderr in the engine's attach protocol.
fn strata_runtime_stderr() -> u8 {
    2
}

impl CopyJob<'_> {
    /// WORKDIR: the directory and its missing parents, owned by root, 0755.
    fn mkdir_dir(&self, path: &str) -> Result<(), String> {
        match copy::open_in(self.rootfs, path, rustix::fs::OFlags::PATH) {
            Ok(fd) => {
                let st = rustix::fs::fstat(&fd).map_err(|e| e.to_string())?;
                if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
                    return Err(format!("Cannot mkdir: {path} is not a directory"));
                }
                Ok(())
            }
            Err(_) => self.mkdir_parents(path),
        }
    }
}

/// Paths as docker prints them in messages.
pub fn display(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(go_quote_list(&["/bin/sh".into(), "-c".into(), "echo \"hi\"".into()]), r#"["/bin/sh" "-c" "echo \"hi\""]"#);
        assert_eq!(go_duration(5_000_000_000), "5s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        let h = Health { test: None, interval: Some(5_000_000_000), timeout: None, start_period: None, start_interval: None, retries: Some(3) };
        assert_eq!(health_comment(&h, &["CMD-SHELL".into(), "true".into()]), r#"HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" "0s" '\x03'}"#);
        assert_eq!(join_dest("/app", "."), "/app");
        assert_eq!(join_dest("", "x/"), "/x/");
        assert_eq!(join_dest("/app", "/abs"), "/abs");
    }
}
