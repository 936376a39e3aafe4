//! Parsed nodes → typed instructions, grouped in stages, with docker's checks and
//! messages (each error names the line it starts on).

use crate::parser::{Dockerfile, Heredoc, Node, ParseError};

/// RUN, CMD, ENTRYPOINT and HEALTHCHECK's command: exec form or a shell string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdLine {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyArgs {
    /// ADD (archives are extracted) rather than COPY.
    pub add: bool,
    pub sources: Vec<String>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub from: Option<String>,
    /// Inline sources (`COPY <<EOF /dest`).
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// None for `HEALTHCHECK NONE`.
    pub test: Option<CmdLine>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub start_interval: Option<i64>,
    pub retries: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Run { cmd: CmdLine, heredocs: Vec<Heredoc> },
    Copy(CopyArgs),
    Env(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Label(Vec<(String, String)>),
    Workdir(String),
    User(String),
    Cmd(CmdLine),
    Entrypoint(CmdLine),
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
    Shell(Vec<String>),
    Healthcheck(Health),
    OnBuild(String),
    Maintainer(String),
}

/// An instruction with its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub inst: Instruction,
    /// As written (continuations joined): `Step n/m : <original>`.
    pub original: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The base as written (before ARG expansion).
    pub base: String,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    pub platform: Option<String>,
    pub original: String,
    pub line: usize,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// ARGs before the first FROM.
    pub meta_args: Vec<Step>,
    pub stages: Vec<Stage>,
    pub escape: char,
}

fn perr(n: &Node, msg: impl Into<String>) -> ParseError {
    ParseError { line: n.start_line, msg: msg.into() }
}

/// Flags allowed per instruction.
fn flags(n: &Node, allowed: &[&str]) -> Result<Vec<(String, String)>, ParseError> {
    let mut out = Vec::new();
    for f in &n.flags {
        let body = &f[2..];
        let (name, value) = match body.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (body.to_string(), String::new()),
        };
        if !allowed.contains(&name.as_str()) {
            return Err(perr(n, format!("unknown flag: {name}")));
        }
        if out.iter().any(|(k, _): &(String, String)| *k == name) {
            return Err(perr(n, format!("Duplicate flag specified: {name}")));
        }
        out.push((name, value));
    }
    Ok(out)
}

fn flag(fl: &[(String, String)], name: &str) -> Option<String> {
    fl.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn cmdline(n: &Node) -> CmdLine {
    if n.json {
        CmdLine::Exec(n.args.clone())
    } else {
        CmdLine::Shell(n.args.first().cloned().unwrap_or_default())
    }
}

fn pairs(args: &[String]) -> Vec<(String, String)> {
    args.chunks(2).map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default())).collect()
}

/// docker's duration syntax (Go's time.ParseDuration): `30s`, `1m30s`, `1.5h`, `500ms`.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mul = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * mul;
        rest = &rest[unit_end..];
    }
    Some(total as i64)
}

/// Parses one instruction node (not FROM).
pub fn instruction(n: &Node) -> Result<Instruction, ParseError> {
    let upper = n.cmd.to_uppercase();
    let at_least_one = || perr(n, format!("{upper} requires at least one argument"));
    let exactly_one = || perr(n, format!("{upper} requires exactly one argument"));
    Ok(match n.cmd.as_str() {
        "run" => {
            flags(n, &["mount", "network", "security"])?;
            if n.args.is_empty() && n.heredocs.is_empty() {
                return Err(at_least_one());
            }
            Instruction::Run { cmd: cmdline(n), heredocs: n.heredocs.clone() }
        }
        "copy" | "add" => {
            let add = n.cmd == "add";
            let allowed: &[&str] = if add { &["chown", "chmod", "link", "checksum", "keep-git-dir"] } else { &["chown", "chmod", "from", "link", "parents", "exclude"] };
            let fl = flags(n, allowed)?;
            let heredoc_names: Vec<&str> = n.heredocs.iter().map(|h| h.name.as_str()).collect();
            let mut args = n.args.clone();
            // Words that open a heredoc are sources by that name.
            let mut heredocs = Vec::new();
            if !n.heredocs.is_empty() {
                let mut kept = Vec::new();
                for a in args {
                    let name = a.trim_start_matches("<<").trim_start_matches('-').trim_matches(['"', '\'']);
                    if a.starts_with("<<") && heredoc_names.contains(&name) {
                        if let Some(h) = n.heredocs.iter().find(|h| h.name == name) {
                            heredocs.push(h.clone());
                        }
                    } else {
                        kept.push(a);
                    }
                }
                args = kept;
            }
            if args.len() + heredocs.len() < 2 || args.is_empty() {
                return Err(perr(
                    n,
                    format!("{upper} requires at least two arguments, but only one was provided. Destination could not be determined"),
                ));
            }
            let dest = args.pop().expect("at least one");
            let chmod = flag(&fl, "chmod").filter(|s| !s.is_empty());
            if let Some(m) = &chmod {
                if !m.contains('$') && u32::from_str_radix(m, 8).map(|v| v > 0o7777).unwrap_or(true) {
                    return Err(perr(n, format!("invalid chmod parameter: {m}")));
                }
            }
            Instruction::Copy(CopyArgs {
                add,
                sources: args,
                dest,
                chown: flag(&fl, "chown").filter(|s| !s.is_empty()),
                chmod,
                from: flag(&fl, "from").filter(|s| !s.is_empty()),
                heredocs,
            })
        }
        "env" => {
            flags(n, &[])?;
            if n.args.is_empty() {
                return Err(at_least_one());
            }
            Instruction::Env(pairs(&n.args))
        }
        "label" => {
            flags(n, &[])?;
            if n.args.is_empty() {
                return Err(at_least_one());
            }
            Instruction::Label(pairs(&n.args))
        }
        "arg" => {
            flags(n, &[])?;
            if n.args.is_empty() {
                return Err(perr(n, "ARG requires at least one argument"));
            }
            let mut out = Vec::new();
            for a in &n.args {
                match a.split_once('=') {
                    Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
                    None => out.push((a.clone(), None)),
                }
            }
            Instruction::Arg(out)
        }
        "workdir" => {
            flags(n, &[])?;
            if n.args.len() != 1 {
                return Err(exactly_one());
            }
            Instruction::Workdir(n.args[0].clone())
        }
        "user" => {
            flags(n, &[])?;
            if n.args.len() != 1 {
                return Err(exactly_one());
            }
            Instruction::User(n.args[0].clone())
        }
        "stopsignal" => {
            flags(n, &[])?;
            if n.args.len() != 1 {
                return Err(exactly_one());
            }
            Instruction::StopSignal(n.args[0].clone())
        }
        "maintainer" => {
            flags(n, &[])?;
            if n.args.is_empty() {
                return Err(exactly_one());
            }
            Instruction::Maintainer(n.args[0].clone())
        }
        "cmd" => {
            flags(n, &[])?;
            Instruction::Cmd(cmdline(n))
        }
        "entrypoint" => {
            flags(n, &[])?;
            Instruction::Entrypoint(cmdline(n))
        }
        "expose" => {
            flags(n, &[])?;
            if n.args.is_empty() {
                return Err(at_least_one());
            }
            Instruction::Expose(n.args.clone())
        }
        "volume" => {
            flags(n, &[])?;
            if n.args.is_empty() {
                return Err(at_least_one());
            }
            if n.args.iter().any(|v| v.trim().is_empty()) {
                return Err(perr(n, "VOLUME specified can not be an empty string"));
            }
            Instruction::Volume(n.args.clone())
        }
        "shell" => {
            flags(n, &[])?;
            if !n.json {
                return Err(perr(n, "SHELL requires the arguments to be in JSON form"));
            }
            if n.args.is_empty() {
                return Err(perr(n, "SHELL requires at least one argument"));
            }
            Instruction::Shell(n.args.clone())
        }
        "healthcheck" => {
            let fl = flags(n, &["interval", "timeout", "start-period", "start-interval", "retries"])?;
            if n.args.is_empty() {
                return Err(at_least_one());
            }
            let kind = n.args[0].to_uppercase();
            let test = match kind.as_str() {
                "NONE" => {
                    if n.args.len() > 1 {
                        return Err(perr(n, "HEALTHCHECK NONE takes no arguments"));
                    }
                    if !fl.is_empty() {
                        return Err(perr(n, "HEALTHCHECK NONE takes no flags"));
                    }
                    None
                }
                "CMD" => {
                    if n.args.len() < 2 {
                        return Err(perr(n, "Missing command after HEALTHCHECK CMD"));
                    }
                    Some(if n.json { CmdLine::Exec(n.args[1..].to_vec()) } else { CmdLine::Shell(n.args[1].clone()) })
                }
                _ => return Err(perr(n, format!("Unknown type \"{kind}\" in HEALTHCHECK (try CMD)"))),
            };
            let dur = |name: &str| -> Result<Option<i64>, ParseError> {
                match flag(&fl, name) {
                    None => Ok(None),
                    Some(v) => {
                        let d = parse_duration(&v).ok_or_else(|| perr(n, format!("time: invalid duration \"{v}\"")))?;
                        if d != 0 && d < 1_000_000 {
                            return Err(perr(n, format!("Interval \"{name}\" cannot be less than 1ms")));
                        }
                        if d < 0 {
                            return Err(perr(n, format!("Interval \"{name}\" cannot be negative")));
                        }
                        Ok(Some(d))
                    }
                }
            };
            let retries = match flag(&fl, "retries") {
                None => None,
                Some(v) => {
                    let r: i64 = v.parse().map_err(|_| perr(n, format!("strconv.ParseInt: parsing \"{v}\": invalid syntax")))?;
                    if r < 0 {
                        return Err(perr(n, "--retries cannot be negative"));
                    }
                    Some(r)
                }
            };
            Instruction::Healthcheck(Health {
                test,
                interval: dur("interval")?,
                timeout: dur("timeout")?,
                start_period: dur("start-period")?,
                start_interval: dur("start-interval")?,
                retries,
            })
        }
        "onbuild" => {
            let Some(sub) = &n.sub else { return Err(at_least_one()) };
            match sub.cmd.as_str() {
                "onbuild" => return Err(perr(n, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")),
                "from" | "maintainer" => return Err(perr(n, format!("{} isn't allowed as an ONBUILD trigger", sub.cmd.to_uppercase()))),
                _ => {}
            }
            // Checked now, run later (in the image built FROM this one).
            let mut s = (**sub).clone();
            s.start_line = n.start_line;
            instruction(&s)?;
            let text = n.original.split_once(is_ws).map(|x| x.1).unwrap_or("").trim().to_string();
            Instruction::OnBuild(text)
        }
        _ => {
            let word = n.original.split(is_ws).next().unwrap_or(&n.cmd);
            return Err(perr(n, format!("unknown instruction: {}", word.to_uppercase())));
        }
    })
}

fn is_ws(c: char) -> bool {
    c.is_whitespace()
}

/// Valid stage names, as docker checks them.
fn valid_stage_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase()) && c.all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, '-' | '_' | '.'))
}

pub fn program(df: &Dockerfile) -> Result<Program, ParseError> {
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for n in &df.nodes {
        if n.cmd == "from" {
            let fl = flags(n, &["platform"])?;
            let (base, name) = match n.args.len() {
                1 => (n.args[0].clone(), None),
                3 if n.args[1].eq_ignore_ascii_case("as") => {
                    let name = n.args[2].to_ascii_lowercase();
                    if !valid_stage_name(&name) {
                        return Err(perr(n, format!("invalid name for build stage: {:?}, name can't start with a number or contain symbols", n.args[2])));
                    }
                    if stages.iter().any(|s| s.name.as_deref() == Some(name.as_str())) {
                        return Err(perr(n, format!("duplicate name {name}")));
                    }
                    (n.args[0].clone(), Some(name))
                }
                3 => return Err(perr(n, format!("expected 'AS', got {:?}", n.args[1]))),
                _ => return Err(perr(n, "FROM requires either one or three arguments")),
            };
            stages.push(Stage { base, name, platform: flag(&fl, "platform"), original: n.original.clone(), line: n.start_line, steps: Vec::new() });
            continue;
        }
        let inst = instruction(n)?;
        let step = Step { inst, original: n.original.clone(), line: n.start_line };
        match stages.last_mut() {
            Some(s) => s.steps.push(step),
            None if matches!(step.inst, Instruction::Arg(_)) => meta_args.push(step),
            None => return Err(ParseError { line: 0, msg: "no build stage in current context".into() }),
        }
    }
    if stages.is_empty() {
        if df.nodes.is_empty() {
            return Err(ParseError { line: 0, msg: "the Dockerfile cannot be empty".into() });
        }
        return Err(ParseError { line: 0, msg: "no build stage in current context".into() });
    }
    Ok(Program { meta_args, stages, escape: df.escape })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn prog(s: &str) -> Result<Program, String> {
        parse(s).and_then(|d| program(&d)).map_err(|e| e.to_string())
    }

    #[test]
    fn stages_and_steps() {
        let p = prog("ARG V=1\nFROM busybox:$V AS Build\nRUN echo\nFROM scratch\nCOPY --from=build /a /b\n").unwrap();
        assert_eq!(p.meta_args.len(), 1);
        assert_eq!(p.stages.len(), 2);
        assert_eq!(p.stages[0].name.as_deref(), Some("build"));
        assert_eq!(p.stages[0].base, "busybox:$V");
        match &p.stages[1].steps[0].inst {
            Instruction::Copy(c) => {
                assert_eq!(c.from.as_deref(), Some("build"));
                assert_eq!((c.sources.clone(), c.dest.clone()), (vec!["/a".to_string()], "/b".to_string()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(prog("FROM busybox\nFOO bar\n").unwrap_err(), "dockerfile parse error on line 2: unknown instruction: FOO");
        assert_eq!(prog("RUN true\n").unwrap_err(), "no build stage in current context");
        assert_eq!(prog("").unwrap_err(), "the Dockerfile cannot be empty");
        assert_eq!(prog("# just a comment\n").unwrap_err(), "the Dockerfile cannot be empty");
        assert_eq!(prog("FROM a\n\nCOPY x\n").unwrap_err(), "dockerfile parse error on line 3: COPY requires at least two arguments, but only one was provided. Destination could not be determined");
        assert_eq!(prog("FROM a\nCOPY --bogus=1 a b\n").unwrap_err(), "dockerfile parse error on line 2: unknown flag: bogus");
        assert_eq!(prog("FROM a\nWORKDIR\n").unwrap_err(), "dockerfile parse error on line 2: WORKDIR requires exactly one argument");
        assert_eq!(prog("FROM a b\n").unwrap_err(), "dockerfile parse error on line 1: FROM requires either one or three arguments");
        assert!(prog("FROM a AS 1x\n").unwrap_err().contains("invalid name for build stage"));
        assert_eq!(prog("FROM a\nSHELL sh -c\n").unwrap_err(), "dockerfile parse error on line 2: SHELL requires the arguments to be in JSON form");
        assert_eq!(prog("FROM a\nONBUILD ONBUILD RUN x\n").unwrap_err(), "dockerfile parse error on line 2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
        assert_eq!(prog("FROM a\nHEALTHCHECK --interval=x CMD true\n").unwrap_err(), "dockerfile parse error on line 2: time: invalid duration \"x\"");
        assert!(prog("FROM a\nCOPY --chmod=999 a b\n").unwrap_err().contains("invalid chmod parameter"));
    }

    #[test]
    fn healthcheck_and_onbuild() {
        let p = prog("FROM a\nHEALTHCHECK --interval=5s --retries=3 CMD [\"true\"]\nHEALTHCHECK NONE\nONBUILD RUN echo  hi\n").unwrap();
        assert_eq!(
            p.stages[0].steps[0].inst,
            Instruction::Healthcheck(Health {
                test: Some(CmdLine::Exec(vec!["true".into()])),
                interval: Some(5_000_000_000),
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: Some(3)
            })
        );
        assert_eq!(p.stages[0].steps[2].inst, Instruction::OnBuild("RUN echo  hi".into()));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("1.5s"), Some(1_500_000_000));
    }

    #[test]
    fn copy_heredoc_sources() {
        let p = prog("FROM a\nCOPY <<EOF /etc/x\nhello\nEOF\n").unwrap();
        match &p.stages[0].steps[0].inst {
            Instruction::Copy(c) => {
                assert!(c.sources.is_empty());
                assert_eq!(c.heredocs[0].content, "hello\n");
                assert_eq!(c.dest, "/etc/x");
            }
            other => panic!("{other:?}"),
        }
    }
}
