//! The Dockerfile parser: lines → nodes, as docker's (BuildKit's) parser reads them.
//!
//! - Parser directives (`# escape=`` ` ``, `# syntax=`, `# check=`) only on the first
//!   lines, before anything else (an empty line or any other line ends them).
//! - Comment lines (`#` after leading whitespace) are dropped, also between the lines of
//!   a continuation; so are empty continuation lines.
//! - A line whose last non-blank character is the escape token continues on the next
//!   one; the escape token is removed, the next line's leading whitespace kept.
//! - Leading `--flag=value` words become flags; the rest is split per instruction
//!   (JSON array or shell form, key=value pairs, whitespace-separated words).
//! - RUN, COPY and ADD may carry heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`): the lines
//!   after the instruction up to the terminator are their content.
//!
//! Unknown instructions are kept here and refused by `instructions`, with their line.

use std::fmt;

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    /// Every line, each with its newline.
    pub content: String,
    /// Variables are expanded in it (the terminator was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from each line.
    pub chomp: bool,
}

impl Heredoc {
    /// The content as the instruction uses it (tabs stripped for `<<-`).
    pub fn text(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
    }
}

/// One instruction as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Lower-case instruction name.
    pub cmd: String,
    /// The whole logical line (continuations joined), trimmed: what `Step n/m :` shows.
    pub original: String,
    pub flags: Vec<String>,
    pub args: Vec<String>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    pub heredocs: Vec<Heredoc>,
    pub start_line: usize,
    pub end_line: usize,
    /// ONBUILD's instruction.
    pub sub: Option<Box<Node>>,
}

/// A parse error with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.msg)
        } else {
            write!(f, "dockerfile parse error on line {}: {}", self.line, self.msg)
        }
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub nodes: Vec<Node>,
    pub escape: char,
    pub syntax: Option<String>,
    pub warnings: Vec<String>,
}

fn err(line: usize, msg: impl Into<String>) -> ParseError {
    ParseError { line, msg: msg.into() }
}

const HEREDOC_INSTRUCTIONS: &[&str] = &["run", "copy", "add"];

pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    // Lines without their newline (`\r\n` too), numbered from 1.
    let lines: Vec<&str> = text.split_inclusive('\n').map(trim_newline).collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut seen_directives: Vec<String> = Vec::new();
    let mut i = 0;
    // Directives.
    while i < lines.len() {
        let Some((name, value)) = directive(lines[i]) else { break };
        let lname = name.to_ascii_lowercase();
        if !matches!(lname.as_str(), "escape" | "syntax" | "check") {
            break;
        }
        if seen_directives.contains(&lname) {
            return Err(err(i + 1, format!("only one {lname} parser directive can be used")));
        }
        seen_directives.push(lname.clone());
        match lname.as_str() {
            "escape" => {
                escape = match value.as_str() {
                    "`" => '`',
                    "\\" => '\\',
                    v => return Err(err(i + 1, format!("invalid escape token '{v}' does not match ` or \\"))),
                }
            }
            "syntax" => syntax = Some(value),
            _ => {}
        }
        i += 1;
    }

    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    while i < lines.len() {
        let start = i + 1;
        let first = lines[i].trim_start();
        i += 1;
        if first.starts_with('#') {
            continue;
        }
        let (mut line, mut done) = trim_continuation(first, escape);
        if done && line.trim().is_empty() {
            continue;
        }
        let mut empty_continuation = false;
        while !done && i < lines.len() {
            let raw = lines[i];
            i += 1;
            let lead = raw.trim_start();
            if lead.starts_with('#') {
                continue;
            }
            if lead.is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, d) = trim_continuation(raw, escape);
            line.push_str(&part);
            done = d;
        }
        if empty_continuation {
            warnings.push(format!("[WARNING]: Empty continuation line found in:\n    {line}"));
        }
        let mut node = node_from_line(&line, escape).map_err(|m| err(start, m))?;
        if HEREDOC_INSTRUCTIONS.contains(&node.cmd.as_str()) && !node.json {
            for mut h in heredocs_in(&line).map_err(|m| err(start, m))? {
                let mut terminated = false;
                while i < lines.len() {
                    let raw = lines[i];
                    i += 1;
                    let candidate = if h.chomp { raw.trim_start_matches('\t') } else { raw };
                    if candidate == h.name {
                        terminated = true;
                        break;
                    }
                    h.content.push_str(raw);
                    h.content.push('\n');
                }
                if !terminated {
                    return Err(err(start, "unterminated heredoc"));
                }
                node.heredocs.push(h);
            }
        }
        node.start_line = start;
        node.end_line = i;
        if let Some(sub) = node.sub.as_mut() {
            sub.start_line = start;
            sub.end_line = i;
        }
        nodes.push(node);
    }
    Ok(Dockerfile { nodes, escape, syntax, warnings })
}

fn trim_newline(l: &str) -> &str {
    let l = l.strip_suffix('\n').unwrap_or(l);
    l.strip_suffix('\r').unwrap_or(l)
}

/// `# name=value` at the top of the file.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?;
    let rest = rest.trim_start_matches([' ', '\t']);
    let eq = rest.find('=')?;
    let name = rest[..eq].trim_end_matches([' ', '\t']);
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) || !chars.all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let value = rest[eq + 1..].trim_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    Some((name.to_string(), value.to_string()))
}

/// Removes a trailing escape token (and blanks after it); says whether the line ended.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(rest) => (rest.to_string(), false),
        None => (line.to_string(), true),
    }
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// Splits a logical line into instruction, flags and per-instruction arguments.
pub(crate) fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    let trimmed = line.trim();
    let (cmd, rest) = match trimmed.find(is_ws) {
        Some(p) => (&trimmed[..p], trimmed[p..].trim_start_matches(is_ws)),
        None => (trimmed, ""),
    };
    let (flags, rest) = extract_flags(rest);
    let rest = rest.trim();
    let lcmd = cmd.to_ascii_lowercase();
    let mut node = Node {
        cmd: lcmd.clone(),
        original: trimmed.to_string(),
        flags,
        args: Vec::new(),
        json: false,
        heredocs: Vec::new(),
        start_line: 0,
        end_line: 0,
        sub: None,
    };
    match lcmd.as_str() {
        "add" | "copy" | "volume" => match parse_json(rest)? {
            Some(v) => {
                node.args = v;
                node.json = true;
            }
            None => node.args = split_ws(rest),
        },
        "cmd" | "entrypoint" | "run" | "shell" => match parse_json(rest)? {
            Some(v) => {
                node.args = v;
                node.json = true;
            }
            None if rest.is_empty() => {}
            None => node.args = vec![rest.to_string()],
        },
        "env" | "label" => node.args = name_values(rest, &lcmd, escape)?,
        "arg" => {
            // `name` or `name=value`, several allowed.
            node.args = words(rest, escape);
        }
        "expose" | "from" => node.args = split_ws(rest),
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !rest.is_empty() {
                node.args = vec![rest.to_string()];
            }
        }
        "healthcheck" => {
            if !rest.is_empty() {
                let (kind, cmdline) = match rest.find(is_ws) {
                    Some(p) => (&rest[..p], rest[p..].trim()),
                    None => (rest, ""),
                };
                node.args.push(kind.to_string());
                if kind.eq_ignore_ascii_case("cmd") {
                    match parse_json(cmdline)? {
                        Some(v) => {
                            node.args.extend(v);
                            node.json = true;
                        }
                        None if cmdline.is_empty() => {}
                        None => node.args.push(cmdline.to_string()),
                    }
                } else if !cmdline.is_empty() {
                    node.args.push(cmdline.to_string());
                }
            }
        }
        "onbuild" => {
            if !rest.is_empty() {
                let sub = node_from_line(rest, escape)?;
                node.sub = Some(Box::new(sub));
            }
        }
        _ => node.args = split_ws(rest),
    }
    Ok(node)
}

/// Leading `--name=value` words, quotes removed from values.
fn extract_flags(s: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let mut rest = s;
    loop {
        let r = rest.trim_start_matches(is_ws);
        if !r.starts_with("--") {
            return (flags, r);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut end = r.len();
        for (i, c) in r.char_indices() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => word.push(c),
                None if c == '"' || c == '\'' => quote = Some(c),
                None if is_ws(c) => {
                    end = i;
                    break;
                }
                None => word.push(c),
            }
        }
        if word == "--" {
            return (flags, r[end..].trim_start_matches(is_ws));
        }
        flags.push(word);
        rest = &r[end..];
    }
}

fn split_ws(s: &str) -> Vec<String> {
    s.split(is_ws).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// A JSON array of strings, or None when the text is not a JSON array (shell form).
fn parse_json(s: &str) -> Result<Option<Vec<String>>, String> {
    let t = s.trim_start();
    if !t.starts_with('[') {
        return Ok(None);
    }
    let v: serde_json::Value = match serde_json::from_str(t) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    let Some(a) = v.as_array() else { return Ok(None) };
    a.iter()
        .map(|x| x.as_str().map(str::to_string).ok_or_else(|| "when using JSON array syntax, arrays must be comprised of strings only".to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Words split on unquoted whitespace; quotes and escapes are kept for the lexer.
pub(crate) fn words(s: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                } else if c == escape && q != '\'' {
                    if let Some(n) = it.next() {
                        cur.push(c);
                        cur.push(n);
                        continue;
                    }
                    continue;
                }
                cur.push(c);
            }
            None => {
                if c.is_whitespace() {
                    if in_word {
                        out.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                    continue;
                }
                in_word = true;
                if c == '"' || c == '\'' {
                    quote = Some(c);
                } else if c == escape {
                    if let Some(n) = it.next() {
                        cur.push(c);
                        cur.push(n);
                    }
                    continue;
                }
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// ENV and LABEL: `k=v k2="x y"` or the legacy `k the rest`. Arguments come back as
/// `key`, `value` pairs, flattened.
fn name_values(rest: &str, cmd: &str, escape: char) -> Result<Vec<String>, String> {
    let ws = words(rest, escape);
    if ws.is_empty() {
        return Ok(Vec::new());
    }
    if !ws[0].contains('=') {
        let parts: Vec<&str> = rest.splitn(2, is_ws).collect();
        if parts.len() < 2 || parts[1].trim().is_empty() {
            return Err(format!("{} must have two arguments", cmd.to_uppercase()));
        }
        return Ok(vec![parts[0].to_string(), parts[1].trim_start_matches(is_ws).to_string()]);
    }
    let mut out = Vec::new();
    for w in ws {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!("Syntax error - can't find = in {w:?}. Must be of the form: name=value"));
        };
        out.push(k.to_string());
        out.push(v.to_string());
    }
    Ok(out)
}

/// The heredocs a line opens, in order.
fn heredocs_in(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut out = Vec::new();
    for w in words(line, '\\') {
        if !w.starts_with("<<") || w.starts_with("<<<") {
            continue;
        }
        let mut rest = &w[2..];
        let chomp = rest.starts_with('-');
        if chomp {
            rest = &rest[1..];
        }
        let rest = rest.trim_start();
        if rest.is_empty() || rest.contains('<') {
            continue;
        }
        let quoted = rest.contains(['"', '\'']);
        let name: String = crate::shell::Lex::new('\\')
            .process_word(rest, &Vec::<String>::new())
            .map_err(|e| e.0)?;
        if name.is_empty() {
            continue;
        }
        out.push(Heredoc { name, content: String::new(), expand: !quoted, chomp });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_continuations_comments_and_lines_numbers() {
        let d = parse("FROM busybox\n# a comment\n\nRUN echo a \\\n    # inside\n\n    && echo b\nENV A=1 B=\"x y\"\n").unwrap();
        assert_eq!(d.nodes.len(), 3);
        let run = &d.nodes[1];
        assert_eq!(run.cmd, "run");
        assert_eq!(run.original, "RUN echo a     && echo b");
        assert_eq!(run.args, vec!["echo a     && echo b"]);
        assert_eq!((run.start_line, run.end_line), (4, 7));
        assert_eq!(d.warnings.len(), 1);
        assert_eq!(d.nodes[2].args, vec!["A", "1", "B", "\"x y\""]);
    }

    #[test]
    fn forms_and_flags() {
        let d = parse("FROM --platform=linux/amd64 busybox AS base\nCOPY --chown=1:1 --from=base [\"a b\", \"/c/\"]\nCMD [\"sh\", \"-c\"]\nCMD sh -c x\nENV A b c\nLABEL a=b c=\"d e\"\n").unwrap();
        assert_eq!(d.nodes[0].flags, vec!["--platform=linux/amd64"]);
        assert_eq!(d.nodes[0].args, vec!["busybox", "AS", "base"]);
        assert_eq!(d.nodes[1].flags, vec!["--chown=1:1", "--from=base"]);
        assert_eq!(d.nodes[1].args, vec!["a b", "/c/"]);
        assert!(d.nodes[1].json);
        assert_eq!(d.nodes[2].args, vec!["sh", "-c"]);
        assert!(d.nodes[2].json);
        assert_eq!(d.nodes[3].args, vec!["sh -c x"]);
        assert_eq!(d.nodes[4].args, vec!["A", "b c"]);
        assert_eq!(d.nodes[5].args, vec!["a", "b", "c", "\"d e\""]);
        assert!(parse("CMD [1, 2]").unwrap_err().msg.contains("strings only"));
        assert_eq!(parse("CMD [\"a\"").unwrap().nodes[0].args, vec!["[\"a\""]);
        assert_eq!(parse("ENV A").unwrap_err().to_string(), "dockerfile parse error on line 1: ENV must have two arguments");
    }

    #[test]
    fn escape_directive() {
        let d = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\n").unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(d.nodes[1].args, vec!["dir c:\\   && echo"]);
        assert!(parse("# escape=x\nFROM a").unwrap_err().msg.contains("invalid escape token"));
        // Not at the top: just a comment.
        let d = parse("FROM x\n# escape=`\nRUN a \\\n b").unwrap();
        assert_eq!(d.escape, '\\');
        assert_eq!(d.nodes[1].args, vec!["a  b"]);
    }

    #[test]
    fn heredocs() {
        let d = parse("FROM x\nRUN <<EOF\necho hi\n  echo there\nEOF\nCOPY <<-\"END\" /f\n\tline $A\nEND\nRUN [\"a\"]\n").unwrap();
        assert_eq!(d.nodes[1].heredocs, vec![Heredoc { name: "EOF".into(), content: "echo hi\n  echo there\n".into(), expand: true, chomp: false }]);
        assert_eq!((d.nodes[1].start_line, d.nodes[1].end_line), (2, 5));
        let h = &d.nodes[2].heredocs[0];
        assert_eq!((h.name.as_str(), h.expand, h.chomp), ("END", false, true));
        assert_eq!(h.text(), "line $A\n");
        assert!(d.nodes[3].heredocs.is_empty());
        assert_eq!(parse("FROM x\nRUN <<EOF\necho\n").unwrap_err().to_string(), "dockerfile parse error on line 2: unterminated heredoc");
    }

    #[test]
    fn onbuild_wraps_a_node() {
        let d = parse("ONBUILD RUN echo hi").unwrap();
        let sub = d.nodes[0].sub.as_ref().unwrap();
        assert_eq!(sub.cmd, "run");
        assert_eq!(sub.args, vec!["echo hi"]);
    }
}
