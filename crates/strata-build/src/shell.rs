//! Variable expansion and word processing as docker's Dockerfile shell lexer does it:
//! quotes, the escape token, `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`,
//! `${VAR:+word}`, `${VAR+word}`, `${VAR:?msg}`, `${VAR?msg}`. It is not a shell: no
//! globbing, no command substitution, no arithmetic. Expansion is single-pass over the
//! environment it is given, so a value that names another variable is never expanded
//! again (no cycles are possible).

/// An error of the lexer, worded as docker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LexError(pub String);

/// The lexer for one Dockerfile (its escape token).
#[derive(Debug, Clone, Copy)]
pub struct Lex {
    pub escape: char,
}

/// Looks up variables: `KEY=value` entries, first match wins.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

impl Env for [String] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter().find_map(|e| match e.split_once('=') {
            Some((k, v)) if k == name => Some(v.to_string()),
            None if e == name => Some(String::new()),
            _ => None,
        })
    }
}

impl Env for Vec<String> {
    fn get(&self, name: &str) -> Option<String> {
        Env::get(self.as_slice(), name)
    }
}

impl Lex {
    pub fn new(escape: char) -> Lex {
        Lex { escape }
    }

    /// Expands one word: quotes removed, escapes applied, variables substituted;
    /// whitespace kept as it is.
    pub fn process_word(&self, word: &str, env: &(impl Env + ?Sized)) -> Result<String, LexError> {
        Ok(self.process(word, env)?.1)
    }

    /// Expands and splits on unquoted whitespace.
    pub fn process_words(&self, word: &str, env: &(impl Env + ?Sized)) -> Result<Vec<String>, LexError> {
        Ok(self.process(word, env)?.0)
    }

    fn process(&self, word: &str, env: &(impl Env + ?Sized)) -> Result<(Vec<String>, String), LexError> {
        let chars: Vec<char> = word.chars().collect();
        let mut st = State { chars: &chars, pos: 0, escape: self.escape, env };
        st.run(None)
    }
}

struct State<'a, E: Env + ?Sized> {
    chars: &'a [char],
    pos: usize,
    escape: char,
    env: &'a E,
}

/// Words being collected: a word exists once any character (or a quote) started it.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    cur: String,
    started: bool,
}

impl Words {
    fn push_str(&mut self, s: &str) {
        self.cur.push_str(s);
        self.started = true;
    }
    /// An unquoted expansion: splits on whitespace like the shell would.
    fn push_split(&mut self, s: &str) {
        let mut first = true;
        for part in s.split(char::is_whitespace) {
            if !first {
                self.end();
            }
            first = false;
            if !part.is_empty() {
                self.push_str(part);
            }
        }
    }
    fn end(&mut self) {
        if self.started {
            self.words.push(std::mem::take(&mut self.cur));
            self.started = false;
        }
    }
}

impl<E: Env + ?Sized> State<'_, E> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes until `stop` (not consumed) or the end; returns the split words and the
    /// whole text as one word.
    fn run(&mut self, stop: Option<char>) -> Result<(Vec<String>, String), LexError> {
        let mut joined = String::new();
        let mut w = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                break;
            }
            if c == self.escape {
                self.next();
                match self.next() {
                    Some(n) => {
                        joined.push(n);
                        w.push_str(&n.to_string());
                    }
                    None => break,
                }
                continue;
            }
            match c {
                '\'' => {
                    self.next();
                    let s = self.single_quoted()?;
                    joined.push_str(&s);
                    w.push_str(&s);
                }
                '"' => {
                    self.next();
                    let s = self.double_quoted()?;
                    joined.push_str(&s);
                    w.push_str(&s);
                }
                '$' => {
                    self.next();
                    let s = self.dollar()?;
                    joined.push_str(&s);
                    w.push_split(&s);
                }
                c if c.is_whitespace() => {
                    self.next();
                    joined.push(c);
                    w.end();
                }
                c => {
                    self.next();
                    joined.push(c);
                    w.push_str(&c.to_string());
                }
            }
        }
        w.end();
        Ok((w.words, joined))
    }

    fn single_quoted(&mut self) -> Result<String, LexError> {
        let mut s = String::new();
        loop {
            match self.next() {
                None => return Err(LexError("unexpected end of statement while looking for matching single-quote".into())),
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, LexError> {
        let mut s = String::new();
        loop {
            match self.next() {
                None => return Err(LexError("unexpected end of statement while looking for matching double-quote".into())),
                Some('"') => return Ok(s),
                Some('$') => s.push_str(&self.dollar()?),
                Some(c) if c == self.escape => match self.peek() {
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.next();
                        s.push(n);
                    }
                    _ => s.push(c),
                },
                Some(c) => s.push(c),
            }
        }
    }

    fn name(&mut self) -> String {
        let mut n = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                n.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        n
    }

    /// After a `$`.
    fn dollar(&mut self) -> Result<String, LexError> {
        match self.peek() {
            Some('{') => {
                self.next();
                self.braced()
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let n = self.name();
                Ok(self.env.get(&n).unwrap_or_default())
            }
            // Positional parameters have no value in a Dockerfile.
            Some(c) if c.is_ascii_digit() => {
                self.next();
                Ok(String::new())
            }
            _ => Ok("$".into()),
        }
    }

    fn braced(&mut self) -> Result<String, LexError> {
        let name = self.name();
        if name.is_empty() {
            return Err(LexError("bad substitution".into()));
        }
        let value = self.env.get(&name);
        let mut colon = false;
        let op = match self.next() {
            Some('}') => return Ok(value.unwrap_or_default()),
            Some(':') => {
                colon = true;
                self.next()
            }
            other => other,
        };
        let op = match op {
            Some(c @ ('-' | '+' | '?')) => c,
            Some(c) => return Err(LexError(format!("unsupported modifier ({c}) in substitution"))),
            None => return Err(LexError(format!("missing '}}' in substitution of {name}"))),
        };
        let (_, word) = self.run(Some('}'))?;
        if self.next() != Some('}') {
            return Err(LexError("syntax error: missing '}'".into()));
        }
        // With a colon, an empty value counts as unset.
        let set = match &value {
            Some(v) => !(colon && v.is_empty()),
            None => false,
        };
        Ok(match op {
            '-' => if set { value.unwrap_or_default() } else { word },
            '+' => if set { word } else { String::new() },
            _ => {
                if set {
                    value.unwrap_or_default()
                } else if word.is_empty() {
                    return Err(LexError(format!("{name}: is not allowed to be unset")));
                } else {
                    return Err(LexError(format!("{name}: {word}")));
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<String> {
        vec!["A=1".into(), "EMPTY=".into(), "SP=a b".into(), "PATH=/bin".into()]
    }

    fn w(s: &str) -> String {
        Lex::new('\\').process_word(s, &env()).unwrap()
    }

    #[test]
    fn expands_like_docker() {
        assert_eq!(w("$A"), "1");
        assert_eq!(w("${A}x"), "1x");
        assert_eq!(w("$Ax"), "");
        assert_eq!(w("${NOPE:-def}"), "def");
        assert_eq!(w("${EMPTY:-def}"), "def");
        assert_eq!(w("${EMPTY-def}"), "");
        assert_eq!(w("${A:-def}"), "1");
        assert_eq!(w("${A:+alt}"), "alt");
        assert_eq!(w("${NOPE:+alt}"), "");
        assert_eq!(w("${EMPTY:+alt}"), "");
        assert_eq!(w("${EMPTY+alt}"), "alt");
        assert_eq!(w("${NOPE:-$A}"), "1");
        assert_eq!(w("${NOPE:-${A:+x$A}}"), "x1");
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A\""), "1");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("\"a\\\"b\""), "a\"b");
        assert_eq!(w("\"a\\nb\""), "a\\nb");
        assert_eq!(w("a b"), "a b");
        assert_eq!(w("$PATH:/usr/bin"), "/bin:/usr/bin");
        assert_eq!(w("$"), "$");
        assert_eq!(w("a$ b"), "a$ b");
        assert_eq!(w("$1x"), "x");
    }

    #[test]
    fn escape_token_is_configurable() {
        let l = Lex::new('`');
        assert_eq!(l.process_word("`$A \\x", &env()).unwrap(), "$A \\x");
    }

    #[test]
    fn words_split_on_unquoted_whitespace() {
        let l = Lex::new('\\');
        assert_eq!(l.process_words("a \"b c\" $SP d", &env()).unwrap(), vec!["a", "b c", "a", "b", "d"]);
        assert_eq!(l.process_words("''", &env()).unwrap(), vec![""]);
    }

    #[test]
    fn errors_are_docker_s() {
        let l = Lex::new('\\');
        assert_eq!(
            l.process_word("\"abc", &env()).unwrap_err().0,
            "unexpected end of statement while looking for matching double-quote"
        );
        assert_eq!(l.process_word("'abc", &env()).unwrap_err().0, "unexpected end of statement while looking for matching single-quote");
        assert_eq!(l.process_word("${NOPE:?must be set}", &env()).unwrap_err().0, "NOPE: must be set");
        assert_eq!(l.process_word("${NOPE?}", &env()).unwrap_err().0, "NOPE: is not allowed to be unset");
        assert!(l.process_word("${A", &env()).is_err());
        assert!(l.process_word("${}", &env()).is_err());
        assert!(l.process_word("${A*b}", &env()).is_err());
    }
}
