//! Go `text/template` rendering with docker's template functions.
//!
//! Templates are parsed by [`super::parse`] (Go's grammar and error messages)
//! and executed by `gotmpl`. Data comes in as `serde_json::Value`:
//!
//! - JSON objects become maps, arrays lists, integers stay integers (`Int`, or
//!   `Uint` above `i64::MAX`), other numbers floats.
//! - JSON `null` becomes a marker that behaves like a Go nil pointer/slice:
//!   false in `if`, empty in `range`, `len` 0, printed `<nil>`, `json` gives
//!   `null`. A missing map key prints `<no value>`, as in Go.
//! - Printing follows Go's `fmt`: `map[k:v]` with sorted keys, `[a b]`,
//!   floats as `%v` (`1e+06`), `true`/`false`.
//! - `json` prints objects that came from the data with their keys in the
//!   data's order (the order of the Go struct fields the JSON mirrors), found
//!   through a side table keyed by the address of each converted list/map.
//!   Maps built otherwise are printed with sorted keys, like Go maps.
//!
//! Functions: Go's builtins (`and call html index js len not or print printf
//! println slice urlquery eq ge gt le lt ne`) and docker's `json split join
//! title lower upper pad truncate`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use gotmpl::{TemplateError, Value};

use super::gofmt::{self, json_encode_value, sprint, sprint_value, sprintln};
use super::parse::{self, METHOD_FN, PRINT_FN};
use super::FormatError;

const MAIN: &str = "\u{0}strata-main";

/// Function names a template may use (checked at parse time, as Go does).
const KNOWN_FUNCS: &[&str] = &[
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne", "json", "split", "join", "title",
    "lower", "upper", "pad", "truncate",
];

type Map = BTreeMap<Arc<str>, Value>;

/// The shared map standing for JSON null; recognised by address.
static NULL: LazyLock<Arc<Map>> = LazyLock::new(|| Arc::new(Map::new()));

fn null_value() -> Value {
    Value::Map(Arc::clone(&NULL))
}

fn is_null(v: &Value) -> bool {
    matches!(v, Value::Map(m) if Arc::ptr_eq(m, &NULL))
}

fn addr(v: &Value) -> Option<usize> {
    match v {
        Value::Map(m) => Some(Arc::as_ptr(m) as *const u8 as usize),
        Value::List(l) => Some(Arc::as_ptr(l) as *const Value as *const u8 as usize),
        _ => None,
    }
}

/// Per-execution state shared with the template functions.
#[derive(Default)]
struct ExecCtx {
    /// Address of a converted list/map → the JSON it came from.
    order: HashMap<usize, serde_json::Value>,
    /// Address of the root value (method calls resolve against it).
    root: Option<usize>,
    /// Methods of the root: name → object indexed by the single argument.
    methods: serde_json::Map<String, serde_json::Value>,
    /// The root is a list row: `json` of it is HTML-escaped, as docker's
    /// formatter contexts marshal themselves with `json.Marshal`.
    row: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Converts JSON to a template value, recording lists/maps in `order` (when
/// given) so `json` can print them in their original key order.
fn to_value(
    v: &serde_json::Value,
    order: &mut Option<&mut HashMap<usize, serde_json::Value>>,
    register: bool,
) -> Value {
    use serde_json::Value as J;
    let out = match v {
        J::Null => return null_value(),
        J::Bool(b) => return Value::Bool(*b),
        J::Number(n) => {
            return if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::Uint(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            };
        }
        J::String(s) => return Value::String(Arc::from(s.as_str())),
        J::Array(items) => {
            let list: Vec<Value> = items.iter().map(|i| to_value(i, order, true)).collect();
            Value::List(list.into())
        }
        J::Object(map) => {
            let m: Map = map
                .iter()
                .map(|(k, i)| (Arc::from(k.as_str()), to_value(i, order, true)))
                .collect();
            Value::Map(Arc::new(m))
        }
    };
    if register {
        if let (Some(order), Some(a)) = (order.as_deref_mut(), addr(&out)) {
            order.insert(a, v.clone());
        }
    }
    out
}

fn from_json_plain(v: &serde_json::Value) -> Value {
    to_value(v, &mut None, false)
}

/// Replaces the null marker by `Nil`, for handing values to gotmpl builtins.
fn denull(v: &Value) -> Value {
    if is_null(v) {
        return Value::Nil;
    }
    match v {
        Value::List(items) => Value::List(items.iter().map(denull).collect::<Vec<_>>().into()),
        Value::Map(m) => Value::Map(Arc::new(
            m.iter().map(|(k, i)| (Arc::clone(k), denull(i))).collect(),
        )),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------
// Argument checking with Go's messages

fn exec_err(msg: impl Into<String>) -> TemplateError {
    TemplateError::Exec(msg.into())
}

fn want_args(name: &str, args: &[Value], n: usize) -> Result<(), TemplateError> {
    if args.len() != n {
        return Err(exec_err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        )));
    }
    Ok(())
}

fn go_type(v: &Value) -> &'static str {
    if is_null(v) {
        return "<nil>";
    }
    match v {
        Value::Nil => "<nil>",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Uint(_) => "uint64",
        Value::Float(_) => "float64",
        Value::String(_) => "string",
        Value::List(_) => "[]interface {}",
        Value::Map(_) => "map[string]interface {}",
        Value::Function(_) => "func",
    }
}

fn arg_str(v: &Value) -> Result<&str, TemplateError> {
    match v {
        Value::String(s) => Ok(s),
        Value::Nil => Err(exec_err("invalid value; expected string")),
        other if is_null(other) => Err(exec_err("invalid value; expected string")),
        other => Err(exec_err(format!(
            "wrong type for value; expected string; got {}",
            go_type(other)
        ))),
    }
}

fn arg_int(v: &Value) -> Result<i64, TemplateError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Uint(u) => i64::try_from(*u).map_err(|_| exec_err(format!("{u} overflows int"))),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
        Value::Nil => Err(exec_err("invalid value; expected int")),
        other => Err(exec_err(format!(
            "wrong type for value; expected int; got {}",
            go_type(other)
        ))),
    }
}

// ---------------------------------------------------------------------------
// docker's functions

/// Go's `unicode.ToUpper` (simple case mapping) approximated with Rust's.
fn simple_upper(c: char) -> char {
    let mut it = c.to_uppercase();
    match (it.next(), it.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

fn simple_lower(c: char) -> char {
    if c == '\u{130}' {
        return 'i';
    }
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

fn simple_title(c: char) -> char {
    match c {
        'Ǆ' | 'ǅ' | 'ǆ' => 'ǅ',
        'Ǉ' | 'ǈ' | 'ǉ' => 'ǈ',
        'Ǌ' | 'ǋ' | 'ǌ' => 'ǋ',
        'Ǳ' | 'ǲ' | 'ǳ' => 'ǲ',
        c => simple_upper(c),
    }
}

/// Go's deprecated `strings.Title`.
pub fn go_title(s: &str) -> String {
    fn is_separator(c: char) -> bool {
        if c.is_ascii() {
            return !(c.is_ascii_alphanumeric() || c == '_');
        }
        if c.is_alphabetic() || c.is_numeric() {
            return false;
        }
        c.is_whitespace()
    }
    let mut prev = ' ';
    s.chars()
        .map(|c| {
            let out = if is_separator(prev) {
                simple_title(c)
            } else {
                c
            };
            prev = c;
            out
        })
        .collect()
}

/// Go's `strings.Split`.
pub fn go_split(s: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        return s.chars().map(String::from).collect();
    }
    s.split(sep).map(String::from).collect()
}

fn str_list(items: Vec<String>) -> Value {
    Value::List(
        items
            .into_iter()
            .map(Value::from)
            .collect::<Vec<_>>()
            .into(),
    )
}

fn register_basic(t: gotmpl::Template, ctx: &Arc<Mutex<ExecCtx>>) -> gotmpl::Template {
    let json_ctx = Arc::clone(ctx);
    t.func("json", move |args| {
        want_args("json", args, 1)?;
        let ctx = lock(&json_ctx);
        let lookup = |v: &Value| -> Option<serde_json::Value> {
            let orig = ctx.order.get(&addr(v)?)?;
            let same_shape = match (v, orig) {
                (Value::Map(m), serde_json::Value::Object(o)) => m.len() == o.len(),
                (Value::List(l), serde_json::Value::Array(a)) => l.len() == a.len(),
                _ => false,
            };
            same_shape.then(|| orig.clone())
        };
        let escape_html = ctx.row && addr(&args[0]) == ctx.root && ctx.root.is_some();
        let mut out = String::new();
        // docker ignores encoding errors: the result is then empty.
        if json_encode_value(&mut out, &args[0], escape_html, &lookup, &is_null).is_err() {
            out.clear();
        }
        Ok(Value::from(out))
    })
    .func("split", |args| {
        want_args("split", args, 2)?;
        Ok(str_list(go_split(arg_str(&args[0])?, arg_str(&args[1])?)))
    })
    .func("join", |args| {
        want_args("join", args, 2)?;
        let sep = arg_str(&args[1])?;
        let items: Vec<&str> = match &args[0] {
            v if is_null(v) => Vec::new(),
            Value::List(items) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s.as_ref()),
                    _ => Err(exec_err(
                        "wrong type for value; expected []string; got []interface {}",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Value::Nil => return Err(exec_err("invalid value; expected []string")),
            other => {
                return Err(exec_err(format!(
                    "wrong type for value; expected []string; got {}",
                    go_type(other)
                )))
            }
        };
        Ok(Value::from(items.join(sep)))
    })
    .func("title", |args| {
        want_args("title", args, 1)?;
        Ok(Value::from(go_title(arg_str(&args[0])?)))
    })
    .func("lower", |args| {
        want_args("lower", args, 1)?;
        Ok(Value::from(
            arg_str(&args[0])?
                .chars()
                .map(simple_lower)
                .collect::<String>(),
        ))
    })
    .func("upper", |args| {
        want_args("upper", args, 1)?;
        Ok(Value::from(
            arg_str(&args[0])?
                .chars()
                .map(simple_upper)
                .collect::<String>(),
        ))
    })
    .func("pad", |args| {
        want_args("pad", args, 3)?;
        let s = arg_str(&args[0])?;
        let (l, r) = (arg_int(&args[1])?, arg_int(&args[2])?);
        if s.is_empty() {
            return Ok(Value::from(""));
        }
        if l < 0 || r < 0 {
            return Err(exec_err(
                "error calling pad: strings: negative Repeat count",
            ));
        }
        Ok(Value::from(format!(
            "{}{}{}",
            " ".repeat(l as usize),
            s,
            " ".repeat(r as usize)
        )))
    })
    .func("truncate", |args| {
        want_args("truncate", args, 2)?;
        let s = arg_str(&args[0])?;
        let n = arg_int(&args[1])?;
        if (s.len() as i64) < n {
            return Ok(Value::from(s));
        }
        if n < 0 {
            return Err(exec_err(format!(
                "error calling truncate: runtime error: slice bounds out of range [:{n}]"
            )));
        }
        // Go slices bytes; a cut inside a character leaves invalid UTF-8,
        // shown here as U+FFFD.
        Ok(Value::from(
            String::from_utf8_lossy(&s.as_bytes()[..n as usize]).into_owned(),
        ))
    })
}

/// docker's `HeaderFunctions`: the header text passes through unchanged.
fn register_header(t: gotmpl::Template) -> gotmpl::Template {
    fn ident(
        name: &'static str,
        extra: Option<bool>,
    ) -> impl Fn(&[Value]) -> Result<Value, TemplateError> {
        // extra: None = 1 arg; Some(false) = (string, string); Some(true) = (string, int)
        move |args: &[Value]| {
            want_args(name, args, if extra.is_some() { 2 } else { 1 })?;
            let s = arg_str(&args[0])?;
            match extra {
                Some(false) => {
                    arg_str(&args[1])?;
                }
                Some(true) => {
                    arg_int(&args[1])?;
                }
                None => {}
            }
            Ok(Value::from(s))
        }
    }
    t.func("json", ident("json", None))
        .func("split", ident("split", Some(false)))
        .func("join", ident("join", Some(false)))
        .func("title", ident("title", None))
        .func("lower", ident("lower", None))
        .func("upper", ident("upper", None))
        .func("truncate", ident("truncate", Some(true)))
}

static PRINTF: LazyLock<Mutex<HashMap<usize, Arc<gotmpl::Template>>>> =
    LazyLock::new(Default::default);

/// Calls gotmpl's `printf` builtin with `args` (null markers made `nil`).
fn go_printf(args: &[Value]) -> Result<Value, TemplateError> {
    if args.is_empty() {
        return Err(exec_err(
            "wrong number of args for printf: want at least 1 got 0",
        ));
    }
    let n = args.len();
    let tmpl = {
        let mut cache = lock(&PRINTF);
        match cache.get(&n) {
            Some(t) => Arc::clone(t),
            None => {
                let src: String = (0..n).map(|i| format!(" (index . {i})")).collect();
                let t = Arc::new(gotmpl::Template::new("").parse(&format!("{{{{printf{src}}}}}"))?);
                cache.insert(n, Arc::clone(&t));
                t
            }
        }
    };
    let mut args: Vec<Value> = args.to_vec();
    if let Value::String(f) = &args[0] {
        let f = Arc::clone(f);
        let (format, rest) = rewrite_printf(&f, &args[1..]);
        args = std::iter::once(Value::from(format)).chain(rest).collect();
    }
    let data = Value::List(args.iter().map(denull).collect::<Vec<_>>().into());
    Ok(Value::from(tmpl.execute_to_string(&data)?))
}

fn only_strings(v: &Value) -> bool {
    match v {
        Value::String(_) => true,
        Value::List(items) => items.iter().all(only_strings),
        Value::Map(m) => !is_null(v) && m.values().all(only_strings),
        _ => false,
    }
}

/// Adjusts a printf call for what gotmpl's `printf` formats differently from
/// Go: `%v` of floats (also with a precision) and of lists/maps (floats and
/// JSON nulls inside), `%s` of lists/maps of strings, and `%T`. Those operands are
/// formatted here and their verb becomes `%s` (keeping `-` and the width).
/// Formats with explicit argument indexes or `*` are left alone.
fn rewrite_printf(format: &str, original: &[Value]) -> (String, Vec<Value>) {
    let mut out = String::with_capacity(format.len());
    let mut args = original.to_vec();
    let mut arg = 0;
    let mut chars = format.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        out.push(c);
        if c != '%' {
            continue;
        }
        let mut spec = String::new();
        let mut verb = None;
        for (_, c) in chars.by_ref() {
            if "+-# 0123456789.".contains(c) {
                spec.push(c);
            } else {
                verb = Some(c);
                break;
            }
        }
        let Some(verb) = verb else {
            out.push_str(&spec);
            break;
        };
        if verb == '%' && spec.is_empty() {
            out.push('%');
            continue;
        }
        if verb == '[' || verb == '*' {
            return (format.to_string(), original.to_vec());
        }
        let left = spec.starts_with('-');
        let body = spec.trim_start_matches('-');
        let (width, prec) = match body.split_once('.') {
            Some((w, p)) => (w, Some(p)),
            None => (body, None),
        };
        let plain = width.chars().all(|c| c.is_ascii_digit()) && !width.starts_with('0');
        let mut replaced = None;
        if plain {
            if let Some(a) = args.get(arg) {
                match (verb, a) {
                    ('T', _) => replaced = Some(go_type(a).to_string()),
                    ('v', Value::Float(f)) => {
                        let p = prec.map(|p| p.parse::<usize>().unwrap_or(0));
                        replaced = Some(gofmt::format_g(*f, p));
                    }
                    ('v', Value::List(_) | Value::Map(_)) if prec.is_none() => {
                        let mut s = String::new();
                        sprint_value(&mut s, a, &is_null);
                        replaced = Some(s);
                    }
                    ('s', Value::List(_) | Value::Map(_)) if prec.is_none() && only_strings(a) => {
                        let mut s = String::new();
                        sprint_value(&mut s, a, &is_null);
                        replaced = Some(s);
                    }
                    _ => {}
                }
            }
        }
        match replaced {
            Some(s) => {
                if left {
                    out.push('-');
                }
                out.push_str(width);
                out.push('s');
                args[arg] = Value::from(s);
            }
            None => {
                out.push_str(&spec);
                out.push(verb);
            }
        }
        arg += 1;
    }
    (out, args)
}

/// Go's `evalArgs` used by `html`, `js` and `urlquery`.
fn eval_args(args: &[Value]) -> String {
    if let [Value::String(s)] = args {
        return s.to_string();
    }
    sprint(args, &is_null)
}

fn register_common(t: gotmpl::Template, ctx: &Arc<Mutex<ExecCtx>>) -> gotmpl::Template {
    let method_ctx = Arc::clone(ctx);
    t.func(PRINT_FN, |args| {
        let mut out = String::new();
        match args.last() {
            None | Some(Value::Nil) => out.push_str("<no value>"),
            Some(v) => sprint_value(&mut out, v, &is_null),
        }
        Ok(Value::from(out))
    })
    .func(METHOD_FN, move |args| {
        let (recv, name) = match args {
            [recv, Value::String(name), ..] => (recv, name.to_string()),
            _ => return Err(exec_err("internal error: bad method call")),
        };
        let margs = &args[2..];
        let ctx = lock(&method_ctx);
        match recv {
            Value::Map(_) if !is_null(recv) => {
                if addr(recv) == ctx.root {
                    if let Some(table) = ctx.methods.get(&name) {
                        if margs.len() != 1 {
                            return Err(exec_err(format!(
                                "wrong number of args for {name}: want 1 got {}",
                                margs.len()
                            )));
                        }
                        let key = arg_str(&margs[0])?;
                        return Ok(match table.get(key) {
                            Some(v) => from_json_plain(v),
                            None => Value::from(""),
                        });
                    }
                }
                Err(exec_err(format!(
                    "{name} is not a method but has arguments"
                )))
            }
            Value::Nil => Err(exec_err(format!(
                "nil pointer evaluating interface {{}}.{name}"
            ))),
            v if is_null(v) => Err(exec_err(format!(
                "nil pointer evaluating interface {{}}.{name}"
            ))),
            other => Err(exec_err(format!(
                "can't evaluate field {name} in type {}",
                go_type(other)
            ))),
        }
    })
    .func("print", |args| Ok(Value::from(sprint(args, &is_null))))
    .func("println", |args| Ok(Value::from(sprintln(args, &is_null))))
    .func("printf", go_printf)
    .func("html", |args| {
        Ok(Value::from(gotmpl::html_escape(&eval_args(args))))
    })
    .func("js", |args| {
        Ok(Value::from(gotmpl::js_escape(&eval_args(args))))
    })
    .func("urlquery", |args| {
        Ok(Value::from(gotmpl::url_encode(&eval_args(args))))
    })
}

/// How the data's top level is treated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Objects keep their key order in `json` (inspect, `render`).
    Object,
    /// A list row, like docker's formatter contexts: `{{json .}}` prints the
    /// row's keys sorted and HTML-escaped (docker marshals the context through
    /// a Go map with `json.Marshal`), a missing field is an error (contexts
    /// are structs), and top-level keys starting with `.` are methods.
    Row,
}

/// A parsed template, executable many times.
pub struct Template {
    body: gotmpl::Template,
    /// Same functions, missing keys are errors (docker's rows are structs).
    row: gotmpl::Template,
    header: gotmpl::Template,
    ctx: Arc<Mutex<ExecCtx>>,
    exec: Mutex<()>,
    uses_json: bool,
}

impl Template {
    /// Parses `src` like docker's `templates.Parse`.
    pub fn parse(src: &str) -> Result<Self, FormatError> {
        let parsed = parse::parse(src, &|name| KNOWN_FUNCS.contains(&name))
            .map_err(|e| FormatError::Parse(e.0))?;
        let ctx = Arc::new(Mutex::new(ExecCtx::default()));
        let build = |header: bool| {
            let mut t = register_common(register_basic(gotmpl::Template::new(""), &ctx), &ctx);
            if header {
                t = register_header(t);
            }
            for d in &parsed.defines {
                t = t.add_parse_tree(d.name.as_str(), d.body.clone());
            }
            t.add_parse_tree(MAIN, parsed.root.clone())
        };
        Ok(Template {
            body: build(false),
            row: build(false).missing_key(gotmpl::MissingKey::Error),
            header: build(true),
            ctx,
            exec: Mutex::new(()),
            uses_json: parsed.uses_json,
        })
    }

    fn run(
        &self,
        tmpl: &gotmpl::Template,
        data: &serde_json::Value,
        mode: Mode,
        out: &mut String,
    ) -> Result<(), FormatError> {
        let _serial = lock(&self.exec);
        let mut order = HashMap::new();
        let mut methods = serde_json::Map::new();
        let value = {
            let mut reg = if self.uses_json {
                Some(&mut order)
            } else {
                None
            };
            match (mode, data) {
                (Mode::Row, serde_json::Value::Object(obj)) => {
                    let mut fields = serde_json::Map::new();
                    for (k, v) in obj {
                        match k.strip_prefix('.') {
                            Some(name) => {
                                methods.insert(name.to_string(), v.clone());
                            }
                            None => {
                                fields.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    to_value(&serde_json::Value::Object(fields), &mut reg, false)
                }
                _ => to_value(data, &mut reg, true),
            }
        };
        {
            let mut ctx = lock(&self.ctx);
            ctx.order = order;
            ctx.root = addr(&value);
            ctx.methods = methods;
            ctx.row = mode == Mode::Row;
        }
        let result = tmpl.execute_template_fmt(out, MAIN, &value);
        *lock(&self.ctx) = ExecCtx::default();
        result.map_err(|e| {
            FormatError::Execute(match e {
                TemplateError::Exec(m) => m,
                TemplateError::UndefinedTemplate(name) => {
                    format!("template {} not defined", gofmt::go_quote(&name))
                }
                TemplateError::MissingKey { key } => format!("can't evaluate field {key}"),
                TemplateError::ArgCount {
                    name,
                    expected,
                    got,
                } => {
                    format!("wrong number of args for {name}: want {expected} got {got}")
                }
                other => other.to_string(),
            })
        })
    }

    /// Executes the template on `data`; objects keep their key order in `json`.
    pub fn execute(&self, data: &serde_json::Value) -> Result<String, FormatError> {
        let mut out = String::new();
        self.run(&self.body, data, Mode::Object, &mut out)?;
        Ok(out)
    }

    /// Executes the template on a list row (see [`super::table`]).
    pub(crate) fn execute_row(&self, row: &serde_json::Value) -> Result<String, FormatError> {
        let mut out = String::new();
        self.run(&self.row, row, Mode::Row, &mut out)?;
        Ok(out)
    }

    /// Executes the template with docker's header functions on a header map.
    /// Like docker, an error only stops the output where it happened.
    pub(crate) fn execute_header(&self, header: &serde_json::Value) -> String {
        let mut out = String::new();
        let _ = self.run(&self.header, header, Mode::Object, &mut out);
        out
    }
}

/// Renders `tmpl` (a Go template, as given to `--format`/`-f`) on `data`.
pub fn render(tmpl: &str, data: &serde_json::Value) -> Result<String, FormatError> {
    Template::parse(tmpl)?.execute(data)
}

/// Go's `%v` of a float, exposed for callers formatting numbers like docker.
pub fn go_float(v: f64) -> String {
    gofmt::format_g(v, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, d: &serde_json::Value) -> String {
        render(t, d).unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    #[test]
    fn fields_and_printing_follow_go() {
        let d = json!({
            "Name": "web",
            "Size": 1234,
            "Big": 18446744073709551615u64,
            "Neg": -3,
            "Ratio": 1.5,
            "Million": 1000000.0,
            "On": true,
            "Off": false,
            "Health": null,
            "Labels": {"z": "1", "a": "2"},
            "Cmd": ["sh", "-c", "echo hi"],
            "Nested": {"b": {"c": 1}, "a": null, "l": [1, "x"]},
        });
        assert_eq!(r("{{.Name}}", &d), "web");
        assert_eq!(r("{{.Size}}", &d), "1234");
        assert_eq!(r("{{.Big}}", &d), "18446744073709551615");
        assert_eq!(r("{{.Neg}}", &d), "-3");
        assert_eq!(r("{{.Ratio}}", &d), "1.5");
        assert_eq!(r("{{.Million}}", &d), "1e+06");
        assert_eq!(r("{{.On}} {{.Off}}", &d), "true false");
        assert_eq!(r("{{.Health}}", &d), "<nil>");
        assert_eq!(r("{{.Missing}}", &d), "<no value>");
        assert_eq!(r("{{.Labels.nope}}", &d), "<no value>");
        assert_eq!(r("{{.Labels}}", &d), "map[a:2 z:1]");
        assert_eq!(r("{{.Cmd}}", &d), "[sh -c echo hi]");
        assert_eq!(r("{{.Nested}}", &d), "map[a:<nil> b:map[c:1] l:[1 x]]");
        assert_eq!(r("{{index .Labels \"z\"}}", &d), "1");
        assert_eq!(r("{{index .Cmd 2}}", &d), "echo hi");
        assert_eq!(
            r("{{len .Cmd}} {{len .Labels}} {{len .Health}}", &d),
            "3 2 0"
        );
        assert_eq!(r("{{if .Health}}y{{else}}n{{end}}", &d), "n");
        assert_eq!(r("{{range .Health}}x{{else}}empty{{end}}", &d), "empty");
        assert_eq!(r("{{with .Health}}x{{else}}none{{end}}", &d), "none");
        assert_eq!(
            r("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}", &d),
            "a=2;z=1;"
        );
        assert_eq!(r("{{range .Cmd}}[{{.}}]{{end}}", &d), "[sh][-c][echo hi]");
        assert_eq!(r("{{.}}", &json!(null)), "<nil>");
        assert_eq!(r("{{if eq .Size 1234}}eq{{end}}", &d), "eq");
        assert_eq!(r("{{if gt .Size 1000}}big{{end}}", &d), "big");
        assert_eq!(r("{{or .Health \"default\"}}", &d), "default");
        assert_eq!(r("{{and .On .Health}}", &d), "<nil>");
        assert_eq!(r("{{$x := .Name}}{{$x}}", &d), "web");
        assert_eq!(r("{{- .Name -}}  \n", &d), "web");
        assert_eq!(r("{{/* comment */}}a", &d), "a");
    }

    #[test]
    fn print_functions_follow_fmt() {
        let d = json!({"A": 1, "B": 2, "S": "s", "N": null, "F": 2.5});
        assert_eq!(r("{{print .A .B}}", &d), "1 2");
        assert_eq!(r("{{print .S .A .B .S}}", &d), "s1 2s");
        assert_eq!(r("{{print .N}}", &d), "<nil>");
        assert_eq!(r("{{println .A .S}}", &d), "1 s\n");
        assert_eq!(r("{{printf \"%d-%s-%v\" .A .S .N}}", &d), "1-s-<nil>");
        assert_eq!(r("{{printf \"%5.1f|%-4s|\" .F .S}}", &d), "  2.5|s   |");
        assert_eq!(
            r(
                "{{printf \"%v|%-6v|%v|%d%%\" 1e21 .F .L 3}}",
                &json!({"F": 1e6, "L": [0.5, null]})
            ),
            "1e+21|1e+06 |[0.5 <nil>]|3%"
        );
        assert_eq!(
            r(
                "{{printf \"%s|%.2v|%-5.3v|%v\" (split \"a,b\" \",\") 3.14159 2.0 .L}}",
                &json!({"L": {"k": 1.5}})
            ),
            "[a b]|3.1|2    |map[k:1.5]"
        );
        let (f, a) = rewrite_printf(
            "%d %v %5v %05v %+v %%v %s %-3v",
            &[
                Value::Int(1),
                Value::Float(1e6),
                Value::Float(0.5),
                Value::Float(1.0),
                Value::Float(1.0),
                Value::Float(1.0),
                Value::Float(1.0),
            ],
        );
        assert_eq!(f, "%d %s %5s %05v %+v %%v %s %-3s");
        assert_eq!(a[1], Value::from("1e+06"));
        assert_eq!(a[6], Value::from("1"));
        assert_eq!(
            r(
                "{{printf \"%T %T %T %T %T\" 1 1.5 \"s\" .L .N}}",
                &json!({"L": [], "N": null})
            ),
            "int float64 string []interface {} <nil>"
        );
        assert_eq!(r("{{.S | printf \"<%s>\"}}", &d), "<s>");
        assert_eq!(r("{{html \"<a&b>\"}}", &d), "&lt;a&amp;b&gt;");
        assert_eq!(r("{{urlquery \"a b&c\"}}", &d), "a+b%26c");
    }

    #[test]
    fn json_keeps_struct_order_and_go_escaping() {
        let d = json!({
            "Id": "abc",
            "Config": {"Image": "alpine", "Env": ["A=1"], "Cmd": null, "Labels": {"b": "2", "a": "1"}},
            "Mounts": [{"Type": "bind", "Source": "/a", "Destination": "/b", "RW": true}],
            "Html": "<&>",
            "Num": 1.0,
            "Empty": {},
        });
        assert_eq!(
            r("{{json .Config}}", &d),
            r#"{"Image":"alpine","Env":["A=1"],"Cmd":null,"Labels":{"b":"2","a":"1"}}"#
        );
        assert_eq!(
            r("{{json .Mounts}}", &d),
            r#"[{"Type":"bind","Source":"/a","Destination":"/b","RW":true}]"#
        );
        assert_eq!(
            r("{{json .}}", &d),
            r#"{"Id":"abc","Config":{"Image":"alpine","Env":["A=1"],"Cmd":null,"Labels":{"b":"2","a":"1"}},"Mounts":[{"Type":"bind","Source":"/a","Destination":"/b","RW":true}],"Html":"<&>","Num":1,"Empty":{}}"#
        );
        assert_eq!(r("{{json .Html}}", &d), r#""<&>""#);
        assert_eq!(r("{{json .Config.Cmd}}", &d), "null");
        assert_eq!(r("{{json .Missing}}", &d), "null");
        assert_eq!(r("{{json .Id}}", &d), r#""abc""#);
        assert_eq!(
            r("{{json (index .Mounts 0)}}", &d),
            r#"{"Type":"bind","Source":"/a","Destination":"/b","RW":true}"#
        );
        assert_eq!(
            r("{{range .Mounts}}{{json .}}{{end}}", &d),
            r#"{"Type":"bind","Source":"/a","Destination":"/b","RW":true}"#
        );
        assert_eq!(r("{{json (split \"a,b\" \",\")}}", &d), r#"["a","b"]"#);
        assert_eq!(r("{{json 1.5}} {{json true}} {{json 3}}", &d), "1.5 true 3");
    }

    #[test]
    fn docker_string_functions() {
        let d = json!({"N": "hello world", "L": ["a", "b", "c"], "Mixed": [1, "a"], "Nil": null});
        assert_eq!(r("{{split .N \" \"}}", &d), "[hello world]");
        assert_eq!(r("{{split \"abc\" \"\"}}", &d), "[a b c]");
        assert_eq!(r("{{len (split \"\" \",\")}}", &d), "1");
        assert_eq!(r("{{join .L \", \"}}", &d), "a, b, c");
        assert_eq!(r("{{join .Nil \",\"}}", &d), "");
        assert_eq!(r("{{title .N}}", &d), "Hello World");
        assert_eq!(r("{{title \"foo-bar_baz élan\"}}", &d), "Foo-Bar_baz Élan");
        assert_eq!(r("{{upper .N}} {{lower \"ÀB\"}}", &d), "HELLO WORLD àb");
        assert_eq!(r("{{upper \"straße\"}}", &d), "STRAßE");
        assert_eq!(r("[{{pad .N 2 3}}]", &d), "[  hello world   ]");
        assert_eq!(r("[{{pad \"\" 2 3}}]", &d), "[]");
        assert_eq!(r("{{truncate .N 5}}", &d), "hello");
        assert_eq!(r("{{truncate .N 11}}", &d), "hello world");
        assert_eq!(r("{{truncate .N 50}}", &d), "hello world");
        assert_eq!(r("{{truncate .N 0}}", &d), "");
        assert_eq!(r("{{truncate (upper .N) 0 | printf \"%q\"}}", &d), "\"\"");
    }

    #[test]
    fn function_errors_match_go() {
        let d = json!({"N": "x", "I": 3, "Mixed": [1, "a"]});
        let e = |t: &str| render(t, &d).unwrap_err().to_string();
        assert_eq!(
            e("{{json}}"),
            "template parsing error: wrong number of args for json: want 1 got 0"
        );
        assert_eq!(
            e("{{upper .I}}"),
            "template parsing error: wrong type for value; expected string; got int"
        );
        assert_eq!(
            e("{{upper .Missing}}"),
            "template parsing error: invalid value; expected string"
        );
        assert_eq!(
            e("{{truncate .N -1}}"),
            "template parsing error: error calling truncate: runtime error: slice bounds out of range [:-1]"
        );
        assert_eq!(
            e("{{pad .N -1 0}}"),
            "template parsing error: error calling pad: strings: negative Repeat count"
        );
        assert_eq!(
            e("{{join .Mixed \",\"}}"),
            "template parsing error: wrong type for value; expected []string; got []interface {}"
        );
        assert_eq!(
            e("{{.N 1}}"),
            "template parsing error: N is not a method but has arguments"
        );
    }

    #[test]
    fn parse_errors_are_docker_messages() {
        let e = |t: &str| render(t, &json!({})).unwrap_err();
        assert_eq!(
            e("{{foo}}").to_string(),
            r#"template parsing error: template: :1: function "foo" not defined"#
        );
        assert!(matches!(e("{{foo}}"), FormatError::Parse(_)));
        assert_eq!(
            e("{{.X").to_string(),
            "template parsing error: template: :1: unclosed action"
        );
    }

    #[test]
    fn templates_defines_and_blocks() {
        let d = json!({"A": "a"});
        assert_eq!(
            r("{{define \"x\"}}<{{.}}>{{end}}{{template \"x\" .A}}", &d),
            "<a>"
        );
        assert_eq!(r("{{block \"y\" .A}}[{{.}}]{{end}}", &d), "[a]");
    }

    #[test]
    fn template_reused_across_executions() {
        let t = Template::parse("{{json .}}").unwrap();
        assert_eq!(
            t.execute(&json!({"b": 1, "a": 2})).unwrap(),
            r#"{"b":1,"a":2}"#
        );
        assert_eq!(
            t.execute(&json!([3, {"z": 1, "y": 2}])).unwrap(),
            r#"[3,{"z":1,"y":2}]"#
        );
        // A list row prints sorted keys, like docker's formatter contexts.
        assert_eq!(
            t.execute_row(&json!({"b": 1, "a": {"d": 1, "c": 2}}))
                .unwrap(),
            r#"{"a":{"d":1,"c":2},"b":1}"#
        );
        // ... and HTML-escaped, unlike `json` of a field.
        let row = json!({"Command": "a && b <c>"});
        assert_eq!(
            t.execute_row(&row).unwrap(),
            r#"{"Command":"a \u0026\u0026 b \u003cc\u003e"}"#
        );
        let t2 = Template::parse("{{json .Command}}").unwrap();
        assert_eq!(t2.execute_row(&row).unwrap(), r#""a && b <c>""#);
        // A row has no missing fields.
        let t3 = Template::parse("{{.Nope}}").unwrap();
        assert_eq!(
            t3.execute_row(&row).unwrap_err(),
            FormatError::Execute("can't evaluate field Nope".into())
        );
    }

    #[test]
    fn template_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Template>();
    }

    #[test]
    fn row_methods() {
        let t = Template::parse(
            "{{.Label \"com.x\"}}|{{.Label \"nope\"}}|{{\"com.x\" | .Label}}|{{.Name}}",
        )
        .unwrap();
        let row = json!({"Name": "n", ".Label": {"com.x": "v"}});
        assert_eq!(t.execute_row(&row).unwrap(), "v||v|n");
        let t = Template::parse("{{json .}}").unwrap();
        assert_eq!(t.execute_row(&row).unwrap(), r#"{"Name":"n"}"#);
    }
}
