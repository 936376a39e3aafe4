//! `.dockerignore` (moby/patternmatcher's rules) and the glob matching COPY sources use
//! (Go's `filepath.Match`).
//!
//! A pattern is cleaned like a path (`./a//b/` → `a/b`, a leading `/` dropped); `*`
//! matches within one path element, `?` one character, `[a-z]` a class, `**` any number
//! of elements; `!pattern` re-includes. A path is excluded when the last pattern that
//! matches it or one of its parent directories is not an exception.

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: one character, not `/`.
    One,
    /// `*`: any run of characters without `/`.
    Star,
    /// `**/` (or `**` before the end): any number of whole elements, none included.
    Dirs,
    /// `**` at the end: anything.
    All,
    Class { neg: bool, items: Vec<(char, char)> },
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    toks: Vec<Tok>,
}

/// A malformed pattern (an unclosed class).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern")]
pub struct BadPattern;

impl Glob {
    /// `double_star`: `**` spans path elements (.dockerignore); otherwise it is `*` twice
    /// (`filepath.Match`, COPY sources).
    pub fn new(pattern: &str, double_star: bool) -> Result<Glob, BadPattern> {
        let c: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < c.len() {
            match c[i] {
                '*' if double_star && c.get(i + 1) == Some(&'*') => {
                    i += 2;
                    if c.get(i) == Some(&'/') {
                        i += 1;
                    }
                    toks.push(if i >= c.len() { Tok::All } else { Tok::Dirs });
                    continue;
                }
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::One),
                '\\' if i + 1 < c.len() => {
                    i += 1;
                    toks.push(Tok::Lit(c[i]));
                }
                '[' => {
                    let mut j = i + 1;
                    let neg = matches!(c.get(j), Some('^') | Some('!'));
                    if neg {
                        j += 1;
                    }
                    let mut items = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(&ch) = c.get(j) else { return Err(BadPattern) };
                        if ch == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = if ch == '\\' {
                            j += 1;
                            *c.get(j).ok_or(BadPattern)?
                        } else {
                            ch
                        };
                        j += 1;
                        if c.get(j) == Some(&'-') && c.get(j + 1).is_some_and(|x| *x != ']') {
                            let mut hi = c[j + 1];
                            j += 2;
                            if hi == '\\' {
                                hi = *c.get(j).ok_or(BadPattern)?;
                                j += 1;
                            }
                            items.push((lo, hi));
                        } else {
                            items.push((lo, lo));
                        }
                    }
                    toks.push(Tok::Class { neg, items });
                    i = j;
                }
                ch => toks.push(Tok::Lit(ch)),
            }
            i += 1;
        }
        Ok(Glob { toks })
    }

    pub fn matches(&self, path: &str) -> bool {
        let p: Vec<char> = path.chars().collect();
        match_at(&self.toks, &p)
    }
}

fn match_at(toks: &[Tok], p: &[char]) -> bool {
    let Some((t, rest)) = toks.split_first() else { return p.is_empty() };
    match t {
        Tok::Lit(c) => p.first() == Some(c) && match_at(rest, &p[1..]),
        Tok::One => p.first().is_some_and(|c| *c != '/') && match_at(rest, &p[1..]),
        Tok::Class { neg, items } => match p.first() {
            Some(&c) if c != '/' => {
                let inside = items.iter().any(|(lo, hi)| *lo <= c && c <= *hi);
                inside != *neg && match_at(rest, &p[1..])
            }
            _ => false,
        },
        Tok::Star => {
            let mut i = 0;
            loop {
                if match_at(rest, &p[i..]) {
                    return true;
                }
                if i >= p.len() || p[i] == '/' {
                    return false;
                }
                i += 1;
            }
        }
        Tok::All => true,
        Tok::Dirs => {
            // Zero elements, or any prefix ending in `/`.
            if match_at(rest, p) {
                return true;
            }
            (0..p.len()).any(|i| p[i] == '/' && match_at(rest, &p[i + 1..]))
        }
    }
}

/// Whether a COPY source names a pattern (Go's rule: `*`, `?` or `[` not escaped).
pub fn has_wildcards(s: &str) -> bool {
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => {
                it.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Cleans a slash path as Go's `path.Clean`: no `.` elements, `..` folded, no doubled or
/// trailing slashes; `""` becomes `.`.
pub fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            x => out.push(x),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

#[derive(Debug, Clone)]
struct Pattern {
    glob: Glob,
    exception: bool,
    text: String,
}

/// The patterns of a `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    pub fn parse(text: &str) -> Result<Ignore, String> {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let mut cleaned = clean(pat);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let glob = Glob::new(&cleaned, true).map_err(|_| format!("illegal exclusion pattern: {cleaned:?}"))?;
            patterns.push(Pattern { glob, exception, text: cleaned });
        }
        Ok(Ignore { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether some pattern re-includes: then an excluded directory must still be
    /// walked, since something under it may come back.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `rel` (a clean path relative to the context, `/`-separated) is excluded.
    pub fn excluded(&self, rel: &str) -> bool {
        let mut matched = false;
        let parents: Vec<&str> = rel.split('/').collect();
        for p in &self.patterns {
            // A pattern can only change the outcome if it says the opposite.
            if p.exception != matched {
                continue;
            }
            let mut m = p.glob.matches(rel);
            if !m && parents.len() > 1 {
                m = (1..parents.len()).any(|i| p.glob.matches(&parents[..i].join("/")));
            }
            if m {
                matched = !p.exception;
            }
        }
        matched
    }

    /// Patterns as cleaned (for messages and tests).
    pub fn texts(&self) -> Vec<&str> {
        self.patterns.iter().map(|p| p.text.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_filepath_match() {
        let g = |p: &str, s: &str| Glob::new(p, false).unwrap().matches(s);
        assert!(g("*.txt", "a.txt"));
        assert!(!g("*.txt", "d/a.txt"));
        assert!(g("d/*", "d/a"));
        assert!(g("f?le", "file"));
        assert!(!g("f?le", "f/le"));
        assert!(g("[a-c]x", "bx"));
        assert!(!g("[^a-c]x", "bx"));
        assert!(g("\\*", "*"));
        assert!(!g("\\*", "a"));
        assert!(Glob::new("[a", false).is_err());
        assert!(has_wildcards("a*"));
        assert!(!has_wildcards("a\\*"));
    }

    #[test]
    fn clean_is_go_s() {
        assert_eq!(clean("./a//b/"), "a/b");
        assert_eq!(clean("a/../../b"), "../b");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("/"), "/");
    }

    #[test]
    fn dockerignore_rules() {
        let ig = Ignore::parse("# comment\n*.log\n/build\n**/tmp\n!keep.log\nsecret*\n!secret-ok\ndocs/**\n").unwrap();
        assert!(ig.excluded("a.log"));
        assert!(!ig.excluded("d/a.log"), "* does not cross directories");
        assert!(!ig.excluded("keep.log"));
        assert!(ig.excluded("build"));
        assert!(ig.excluded("build/x/y"), "a parent directory matching excludes the subtree");
        assert!(ig.excluded("tmp"));
        assert!(ig.excluded("a/b/tmp/c"));
        assert!(ig.excluded("secret1"));
        assert!(!ig.excluded("secret-ok"));
        assert!(ig.excluded("docs/a/b"));
        assert!(!ig.excluded("src/main.rs"));
        assert!(ig.has_exceptions());
        let ig = Ignore::parse("*\n!src\n").unwrap();
        assert!(ig.excluded("Dockerfile"));
        assert!(!ig.excluded("src/a/b"), "an exception on a parent brings the subtree back");
        assert_eq!(Ignore::parse("./a/\n").unwrap().texts(), vec!["a"]);
    }
}
