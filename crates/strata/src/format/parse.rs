//! A port of Go's `text/template/parse` lexer and parser that builds
//! `gotmpl`'s AST.
//!
//! gotmpl's own parser is lenient where Go is strict (it accepts an unclosed
//! `{{if}}`, a stray `{{end}}`, undefined functions and variables, ...), and
//! docker reports Go's parse errors verbatim, so templates are parsed here with
//! Go's grammar and Go's error messages (`template: :1: function "foo" not
//! defined`), then handed to gotmpl for execution.
//!
//! While building the tree, two rewrites prepare execution:
//! - every printing action `{{pipeline}}` gets a final command
//!   [`PRINT_FN`], so values are printed the way Go's `fmt` prints them;
//! - a field used as a method with arguments (`{{.Label "x"}}`, or a field as
//!   a later pipeline stage) becomes a call of [`METHOD_FN`] with the receiver,
//!   the method name and the arguments.

use std::sync::Arc;

use gotmpl::parse::{
    ActionNode, BranchNode, CommandNode, DefineNode, Expr, ListNode, Node, Number, PipeNode, Pos,
    SmolStr, TemplateNode, TextNode,
};

use super::gofmt::{go_char_u, go_quote};

/// Internal function appended to printing actions.
pub const PRINT_FN: &str = "__strata_print";
/// Internal function standing for a method call `recv.Name args...`.
pub const METHOD_FN: &str = "__strata_method";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum It {
    Error,
    Bool,
    Char,
    CharConstant,
    Complex,
    Assign,
    Declare,
    Eof,
    Field,
    Identifier,
    LeftDelim,
    LeftParen,
    Number,
    Pipe,
    RawString,
    RightDelim,
    RightParen,
    Space,
    Str,
    Text,
    Variable,
    // keywords
    Block,
    Break,
    Continue,
    Dot,
    Define,
    Else,
    End,
    If,
    Nil,
    Range,
    Template,
    With,
}

impl It {
    fn is_keyword(self) -> bool {
        matches!(
            self,
            It::Block
                | It::Break
                | It::Continue
                | It::Dot
                | It::Define
                | It::Else
                | It::End
                | It::If
                | It::Nil
                | It::Range
                | It::Template
                | It::With
        )
    }
}

#[derive(Clone, Debug)]
struct Item {
    typ: It,
    pos: usize,
    val: String,
    line: usize,
}

impl Item {
    /// Go's `item.String()`, used in "unexpected X in Y" messages.
    fn describe(&self) -> String {
        match self.typ {
            It::Eof => "EOF".into(),
            It::Error => self.val.clone(),
            t if t.is_keyword() => format!("<{}>", self.val),
            _ => {
                if self.val.len() > 10 {
                    let head: String = self.val.chars().take(10).collect();
                    format!("{}...", go_quote(&head))
                } else {
                    go_quote(&self.val)
                }
            }
        }
    }
}

const LEFT: &str = "{{";
const RIGHT: &str = "}}";
const LEFT_COMMENT: &str = "/*";
const RIGHT_COMMENT: &str = "*/";

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

fn has_left_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1] as char)
}

fn has_right_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(b[0] as char) && b[1] == b'-'
}

const SPACE_CHARS: &[char] = &[' ', '\t', '\r', '\n'];

/// Go's lexer, run to completion: the items up to and including the first
/// error (or EOF).
struct Lexer<'a> {
    input: &'a str,
    start: usize,
    pos: usize,
    items: Vec<Item>,
    paren_depth: i32,
}

enum State {
    Text,
    LeftDelim,
    Comment,
    RightDelim,
    InsideAction,
    Space,
    Identifier,
    Field,
    Variable,
    Char,
    Number,
    Quote,
    RawQuote,
}

impl<'a> Lexer<'a> {
    fn line_at(&self, pos: usize) -> usize {
        1 + self.input[..pos].bytes().filter(|&b| b == b'\n').count()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.input[self.pos..].chars().next()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn backup(&mut self) {
        if let Some(c) = self.input[..self.pos].chars().next_back() {
            self.pos -= c.len_utf8();
        }
    }

    fn emit(&mut self, typ: It) {
        let item = Item {
            typ,
            pos: self.start,
            val: self.input[self.start..self.pos].to_string(),
            line: self.line_at(self.start),
        };
        self.items.push(item);
        self.start = self.pos;
    }

    fn ignore(&mut self) {
        self.start = self.pos;
    }

    /// Emits an error item; lexing stops.
    fn errorf(&mut self, msg: String) -> Option<State> {
        let line = self.line_at(self.start);
        self.items.push(Item {
            typ: It::Error,
            pos: self.start,
            val: msg,
            line,
        });
        None
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    fn at_right_delim(&self) -> (bool, bool) {
        let rest = &self.input[self.pos..];
        if has_right_trim(rest) && rest[2..].starts_with(RIGHT) {
            return (true, true);
        }
        if rest.starts_with(RIGHT) {
            return (true, false);
        }
        (false, false)
    }

    fn at_terminator(&self) -> bool {
        match self.peek() {
            None => true,
            Some(c) if is_space(c) => true,
            Some('.' | ',' | '|' | ':' | ')' | '(') => true,
            _ => self.input[self.pos..].starts_with(RIGHT),
        }
    }

    fn run(mut self) -> Vec<Item> {
        let mut state = Some(State::Text);
        let mut inside = false;
        while let Some(s) = state {
            state = match s {
                State::Text => self.lex_text(),
                State::LeftDelim => {
                    inside = true;
                    self.lex_left_delim()
                }
                State::Comment => self.lex_comment(),
                State::RightDelim => {
                    inside = false;
                    self.lex_right_delim()
                }
                State::InsideAction => self.lex_inside_action(),
                State::Space => self.lex_space(),
                State::Identifier => self.lex_identifier(),
                State::Field => self.lex_field_or_variable(It::Field),
                State::Variable => {
                    if self.at_terminator() {
                        self.emit(It::Variable);
                        Some(State::InsideAction)
                    } else {
                        self.lex_field_or_variable(It::Variable)
                    }
                }
                State::Char => self.lex_char(),
                State::Number => self.lex_number(),
                State::Quote => self.lex_quote(),
                State::RawQuote => self.lex_raw_quote(),
            };
            if let Some(last) = self.items.last() {
                if last.typ == It::Eof || last.typ == It::Error {
                    break;
                }
            }
        }
        let _ = inside;
        if self.items.last().map(|i| i.typ) != Some(It::Eof) {
            let end = self.input.len();
            self.items.push(Item {
                typ: It::Eof,
                pos: end,
                val: String::new(),
                line: self.line_at(end),
            });
        }
        self.items
    }

    fn lex_text(&mut self) -> Option<State> {
        if let Some(x) = self.input[self.pos..].find(LEFT) {
            if x > 0 {
                self.pos += x;
                let delim_end = self.pos + LEFT.len();
                let mut trim = 0;
                if has_left_trim(&self.input[delim_end..]) {
                    let text = &self.input[self.start..self.pos];
                    trim = text.len() - text.trim_end_matches(SPACE_CHARS).len();
                }
                self.pos -= trim;
                if self.pos > self.start {
                    self.emit(It::Text);
                }
                self.pos += trim;
                self.ignore();
            }
            return Some(State::LeftDelim);
        }
        self.pos = self.input.len();
        if self.pos > self.start {
            self.emit(It::Text);
        }
        self.emit(It::Eof);
        None
    }

    fn lex_left_delim(&mut self) -> Option<State> {
        self.pos += LEFT.len();
        let trim = has_left_trim(&self.input[self.pos..]);
        let after = if trim { 2 } else { 0 };
        if self.input[self.pos + after..].starts_with(LEFT_COMMENT) {
            self.pos += after;
            self.ignore();
            return Some(State::Comment);
        }
        self.emit(It::LeftDelim);
        self.pos += after;
        self.ignore();
        self.paren_depth = 0;
        Some(State::InsideAction)
    }

    fn lex_comment(&mut self) -> Option<State> {
        self.pos += LEFT_COMMENT.len();
        let Some(x) = self.input[self.pos..].find(RIGHT_COMMENT) else {
            return self.errorf("unclosed comment".into());
        };
        self.pos += x + RIGHT_COMMENT.len();
        let (delim, trim) = self.at_right_delim();
        if !delim {
            return self.errorf("comment ends before closing delimiter".into());
        }
        if trim {
            self.pos += 2;
        }
        self.pos += RIGHT.len();
        if trim {
            let rest = &self.input[self.pos..];
            self.pos += rest.len() - rest.trim_start_matches(SPACE_CHARS).len();
        }
        self.ignore();
        Some(State::Text)
    }

    fn lex_right_delim(&mut self) -> Option<State> {
        let (_, trim) = self.at_right_delim();
        if trim {
            self.pos += 2;
            self.ignore();
        }
        self.pos += RIGHT.len();
        self.emit(It::RightDelim);
        if trim {
            let rest = &self.input[self.pos..];
            self.pos += rest.len() - rest.trim_start_matches(SPACE_CHARS).len();
            self.ignore();
        }
        Some(State::Text)
    }

    fn lex_inside_action(&mut self) -> Option<State> {
        let (delim, _) = self.at_right_delim();
        if delim {
            if self.paren_depth == 0 {
                return Some(State::RightDelim);
            }
            return self.errorf("unclosed left paren".into());
        }
        let Some(r) = self.next() else {
            return self.errorf("unclosed action".into());
        };
        match r {
            c if is_space(c) => {
                self.backup();
                return Some(State::Space);
            }
            '=' => self.emit(It::Assign),
            ':' => {
                if self.next() != Some('=') {
                    return self.errorf("expected :=".into());
                }
                self.emit(It::Declare);
            }
            '|' => self.emit(It::Pipe),
            '"' => return Some(State::Quote),
            '`' => return Some(State::RawQuote),
            '$' => return Some(State::Variable),
            '\'' => return Some(State::Char),
            '.' if self.pos < self.input.len()
                && !self.input.as_bytes()[self.pos].is_ascii_digit() =>
            {
                return Some(State::Field);
            }
            '.' | '+' | '-' | '0'..='9' => {
                self.backup();
                return Some(State::Number);
            }
            c if is_alnum(c) => {
                self.backup();
                return Some(State::Identifier);
            }
            '(' => {
                self.paren_depth += 1;
                self.emit(It::LeftParen);
            }
            ')' => {
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self.errorf("unexpected right paren".into());
                }
                self.emit(It::RightParen);
            }
            c if (' '..='~').contains(&c) => self.emit(It::Char),
            c => {
                return self.errorf(format!(
                    "unrecognized character in action: {}",
                    go_char_u(c)
                ))
            }
        }
        Some(State::InsideAction)
    }

    fn lex_space(&mut self) -> Option<State> {
        let mut num = 0;
        while let Some(c) = self.peek() {
            if !is_space(c) {
                break;
            }
            self.next();
            num += 1;
        }
        let before = &self.input[self.pos - 1..];
        if has_right_trim(before) && before[2..].starts_with(RIGHT) {
            self.backup();
            if num == 1 {
                return Some(State::RightDelim);
            }
        }
        self.emit(It::Space);
        Some(State::InsideAction)
    }

    fn lex_identifier(&mut self) -> Option<State> {
        loop {
            match self.next() {
                Some(c) if is_alnum(c) => {}
                r => {
                    if r.is_some() {
                        self.backup();
                    }
                    if !self.at_terminator() {
                        let c = self.peek().unwrap_or('\u{FFFD}');
                        return self.errorf(format!("bad character {}", go_char_u(c)));
                    }
                    let word = &self.input[self.start..self.pos];
                    let typ = match word {
                        "block" => It::Block,
                        "break" => It::Break,
                        "continue" => It::Continue,
                        "define" => It::Define,
                        "else" => It::Else,
                        "end" => It::End,
                        "if" => It::If,
                        "range" => It::Range,
                        "nil" => It::Nil,
                        "template" => It::Template,
                        "with" => It::With,
                        "true" | "false" => It::Bool,
                        _ => It::Identifier,
                    };
                    self.emit(typ);
                    return Some(State::InsideAction);
                }
            }
        }
    }

    fn lex_field_or_variable(&mut self, typ: It) -> Option<State> {
        if self.at_terminator() {
            self.emit(if typ == It::Variable {
                It::Variable
            } else {
                It::Dot
            });
            return Some(State::InsideAction);
        }
        loop {
            match self.next() {
                Some(c) if is_alnum(c) => {}
                r => {
                    if r.is_some() {
                        self.backup();
                    }
                    break;
                }
            }
        }
        if !self.at_terminator() {
            let c = self.peek().unwrap_or('\u{FFFD}');
            return self.errorf(format!("bad character {}", go_char_u(c)));
        }
        self.emit(typ);
        Some(State::InsideAction)
    }

    fn lex_char(&mut self) -> Option<State> {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    None | Some('\n') => {
                        return self.errorf("unterminated character constant".into())
                    }
                    Some(_) => {}
                },
                None | Some('\n') => return self.errorf("unterminated character constant".into()),
                Some('\'') => break,
                Some(_) => {}
            }
        }
        self.emit(It::CharConstant);
        Some(State::InsideAction)
    }

    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if self.peek().is_some_and(is_alnum) {
            self.next();
            return false;
        }
        true
    }

    fn lex_number(&mut self) -> Option<State> {
        if !self.scan_number() {
            let text = self.input[self.start..self.pos].to_string();
            return self.errorf(format!("bad number syntax: {}", go_quote(&text)));
        }
        if matches!(self.peek(), Some('+' | '-')) {
            if !self.scan_number() || !self.input[..self.pos].ends_with('i') {
                let text = self.input[self.start..self.pos].to_string();
                return self.errorf(format!("bad number syntax: {}", go_quote(&text)));
            }
            self.emit(It::Complex);
            return Some(State::InsideAction);
        }
        self.emit(It::Number);
        Some(State::InsideAction)
    }

    fn lex_quote(&mut self) -> Option<State> {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    None | Some('\n') => return self.errorf("unterminated quoted string".into()),
                    Some(_) => {}
                },
                None | Some('\n') => return self.errorf("unterminated quoted string".into()),
                Some('"') => break,
                Some(_) => {}
            }
        }
        self.emit(It::Str);
        Some(State::InsideAction)
    }

    fn lex_raw_quote(&mut self) -> Option<State> {
        loop {
            match self.next() {
                None => return self.errorf("unterminated raw quoted string".into()),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(It::RawString);
        Some(State::InsideAction)
    }
}

// ---------------------------------------------------------------------------
// strconv helpers

/// Go's `strconv.UnquoteChar` on the start of `s`: the value (a char, or a
/// raw byte for `\x`/octal escapes) and the rest.
fn unquote_char(s: &str, quote: char) -> Result<(u32, bool, &str), ()> {
    let mut chars = s.chars();
    let c = chars.next().ok_or(())?;
    if c == quote && (quote == '\'' || quote == '"') {
        return Err(());
    }
    if c != '\\' {
        return Ok((c as u32, false, chars.as_str()));
    }
    let e = chars.next().ok_or(())?;
    let rest = chars.as_str();
    let simple = match e {
        'a' => Some(7),
        'b' => Some(8),
        'f' => Some(12),
        'n' => Some(10),
        'r' => Some(13),
        't' => Some(9),
        'v' => Some(11),
        '\\' => Some(92),
        '\'' | '"' => {
            if e != quote {
                return Err(());
            }
            Some(e as u32)
        }
        _ => None,
    };
    if let Some(v) = simple {
        return Ok((v, false, rest));
    }
    let (n, base, byte) = match e {
        'x' => (2, 16, true),
        'u' => (4, 16, false),
        'U' => (8, 16, false),
        '0'..='7' => (3, 8, true),
        _ => return Err(()),
    };
    let digits: &str = if e.is_ascii_digit() { &s[1..] } else { rest };
    if digits.len() < n || !digits.is_char_boundary(n) {
        return Err(());
    }
    let v = u32::from_str_radix(&digits[..n], base).map_err(|_| ())?;
    if base == 8 && v > 255 {
        return Err(());
    }
    if !byte && char::from_u32(v).is_none() {
        return Err(());
    }
    Ok((v, byte, &digits[n..]))
}

/// Go's `strconv.Unquote` for `"..."`, `` `...` `` and `'...'`.
fn unquote(s: &str) -> Result<String, ()> {
    let q = s.chars().next().ok_or(())?;
    if s.len() < 2 || !s.ends_with(q) {
        return Err(());
    }
    let body = &s[1..s.len() - 1];
    match q {
        '`' => {
            if body.contains('`') {
                return Err(());
            }
            Ok(body.replace('\r', ""))
        }
        '"' | '\'' => {
            let mut bytes = Vec::new();
            let mut rest = body;
            while !rest.is_empty() {
                if q == '\'' && rest.starts_with('\'') {
                    return Err(());
                }
                let (v, is_byte, r) = unquote_char(rest, q)?;
                if is_byte {
                    bytes.push(v as u8);
                } else {
                    let c = char::from_u32(v).ok_or(())?;
                    let mut buf = [0; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                rest = r;
            }
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => Err(()),
    }
}

/// Go's `strconv.ParseUint(text, 0, 64)` (base prefix, underscores only with
/// a prefix... Go allows them with base 0 anywhere between digits).
fn parse_uint_base0(text: &str) -> Option<u64> {
    let (digits, base) =
        if let Some(r) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (r, 16)
        } else if let Some(r) = text.strip_prefix("0o").or_else(|| text.strip_prefix("0O")) {
            (r, 8)
        } else if let Some(r) = text.strip_prefix("0b").or_else(|| text.strip_prefix("0B")) {
            (r, 2)
        } else if text.len() > 1 && text.starts_with('0') {
            (&text[1..], 8)
        } else {
            (text, 10)
        };
    if digits.is_empty() {
        return None;
    }
    // Underscores must separate digits (Go's underscoreOK); accept the simple
    // well-formed cases.
    if digits.starts_with('_') && base == 10 || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if clean.is_empty() {
        return None;
    }
    u64::from_str_radix(&clean, base).ok()
}

fn parse_int_base0(text: &str) -> Option<i64> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let u = parse_uint_base0(body)?;
    if neg {
        if u <= i64::MAX as u64 + 1 {
            Some((u as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(u).ok()
    }
}

fn parse_go_float(text: &str) -> Option<f64> {
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    let lower = clean.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if let Some(body) = unsigned.strip_prefix("0x") {
        // Hex float: 0x1.8p3
        let neg = lower.starts_with('-');
        let (mant, exp) = body.split_once('p')?;
        let exp: i32 = exp.parse().ok()?;
        let (ip, fp) = mant.split_once('.').unwrap_or((mant, ""));
        let mut v = 0f64;
        for c in ip.chars() {
            v = v * 16.0 + c.to_digit(16)? as f64;
        }
        let mut scale = 1.0 / 16.0;
        for c in fp.chars() {
            v += c.to_digit(16)? as f64 * scale;
            scale /= 16.0;
        }
        let v = v * 2f64.powi(exp);
        return Some(if neg { -v } else { v });
    }
    if unsigned.is_empty()
        || unsigned.contains(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-')))
    {
        return None;
    }
    clean.parse::<f64>().ok()
}

// ---------------------------------------------------------------------------
// Parser

/// A parse error, already formatted like Go's (`template: :1: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

type PResult<T> = Result<T, ParseError>;

/// What a parse produces: the main tree, the `{{define}}`d trees, and whether
/// the `json` function is used anywhere.
pub struct Parsed {
    pub root: ListNode,
    pub defines: Vec<DefineNode>,
    pub uses_json: bool,
}

/// Result of `action()`/`text_or_action()`: a node, or an `{{end}}`/`{{else}}`
/// marker.
enum Act {
    Node(Node),
    End(usize, usize),
    Else(usize, usize),
}

struct Parser<'f> {
    items: Vec<Item>,
    idx: usize,
    hi: usize,
    vars: Vec<String>,
    range_depth: usize,
    action_line: usize,
    has_func: &'f dyn Fn(&str) -> bool,
    defines: Vec<DefineNode>,
    uses_json: bool,
}

fn pos(it: &Item) -> Pos {
    Pos::new(it.pos, it.line)
}

impl Parser<'_> {
    fn fetch(&mut self, i: usize) -> Item {
        let i = i.min(self.items.len() - 1);
        self.hi = self.hi.max(i);
        self.items[i].clone()
    }

    fn next(&mut self) -> Item {
        // Past the end, `fetch` keeps returning the final EOF item.
        let it = self.fetch(self.idx);
        self.idx += 1;
        it
    }

    fn backup(&mut self) {
        self.idx -= 1;
    }

    fn peek(&mut self) -> Item {
        self.fetch(self.idx)
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let it = self.next();
            if it.typ != It::Space {
                return it;
            }
        }
    }

    fn peek_non_space(&mut self) -> Item {
        let it = self.next_non_space();
        self.backup();
        it
    }

    fn errorf(&self, msg: impl Into<String>) -> ParseError {
        let line = self.items[self.hi.min(self.items.len() - 1)].line;
        ParseError(format!("template: :{}: {}", line, msg.into()))
    }

    fn unexpected(&self, token: &Item, context: &str) -> ParseError {
        if token.typ == It::Error {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != token.line {
                extra = format!(" in action started at :{}", self.action_line);
                if token.val.ends_with(" action") {
                    extra = extra[" in action".len()..].to_string();
                }
            }
            return self.errorf(format!("{}{}", token.val, extra));
        }
        self.errorf(format!("unexpected {} in {}", token.describe(), context))
    }

    fn expect(&mut self, typ: It, context: &str) -> PResult<Item> {
        let token = self.next_non_space();
        if token.typ != typ {
            return Err(self.unexpected(&token, context));
        }
        Ok(token)
    }

    fn parse(&mut self) -> PResult<ListNode> {
        let first = self.peek();
        let mut root = ListNode {
            pos: pos(&first),
            nodes: Vec::new(),
        };
        while self.peek().typ != It::Eof {
            if self.peek().typ == It::LeftDelim {
                let save = self.idx;
                self.next();
                if self.next_non_space().typ == It::Define {
                    self.parse_definition()?;
                    continue;
                }
                self.idx = save;
            }
            match self.text_or_action()? {
                Act::Node(n) => root.nodes.push(n),
                Act::End(..) => return Err(self.errorf("unexpected {{end}}")),
                Act::Else(..) => return Err(self.errorf("unexpected {{else}}")),
            }
        }
        Ok(root)
    }

    fn parse_definition(&mut self) -> PResult<()> {
        let context = "define clause";
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let saved_depth = std::mem::replace(&mut self.range_depth, 0);
        let token = self.next_non_space();
        if token.typ != It::Str && token.typ != It::RawString {
            return Err(self.unexpected(&token, context));
        }
        let name = unquote(&token.val).map_err(|_| self.errorf("invalid syntax"))?;
        self.expect(It::RightDelim, context)?;
        let (list, end) = self.item_list()?;
        match end {
            Act::End(..) => {}
            Act::Else(..) => {
                return Err(self.errorf(format!("unexpected {{{{else}}}} in {context}")))
            }
            Act::Node(_) => unreachable_node()?,
        }
        self.defines.push(DefineNode {
            pos: pos(&token),
            name: SmolStr::from(name),
            body: list,
        });
        self.vars = saved_vars;
        self.range_depth = saved_depth;
        Ok(())
    }

    fn item_list(&mut self) -> PResult<(ListNode, Act)> {
        let p = self.peek_non_space();
        let mut list = ListNode {
            pos: pos(&p),
            nodes: Vec::new(),
        };
        while self.peek_non_space().typ != It::Eof {
            match self.text_or_action()? {
                Act::Node(n) => list.nodes.push(n),
                other => return Ok((list, other)),
            }
        }
        Err(self.errorf("unexpected EOF"))
    }

    fn text_or_action(&mut self) -> PResult<Act> {
        let token = self.next_non_space();
        match token.typ {
            It::Text => Ok(Act::Node(Node::Text(TextNode {
                pos: pos(&token),
                text: Arc::from(token.val.as_str()),
            }))),
            It::LeftDelim => {
                self.action_line = token.line;
                let r = self.action();
                self.action_line = 0;
                r
            }
            _ => Err(self.unexpected(&token, "input")),
        }
    }

    fn action(&mut self) -> PResult<Act> {
        let token = self.next_non_space();
        match token.typ {
            It::Block => return self.block_control(),
            It::Break | It::Continue => {
                let name = if token.typ == It::Break {
                    "{{break}}"
                } else {
                    "{{continue}}"
                };
                let t = self.next_non_space();
                if t.typ != It::RightDelim {
                    return Err(self.unexpected(&t, name));
                }
                if self.range_depth == 0 {
                    return Err(self.errorf(format!("{name} outside {{{{range}}}}")));
                }
                return Ok(Act::Node(if token.typ == It::Break {
                    Node::Break(pos(&token))
                } else {
                    Node::Continue(pos(&token))
                }));
            }
            It::Else => {
                let peek = self.peek_non_space();
                if peek.typ == It::If || peek.typ == It::With {
                    return Ok(Act::Else(peek.pos, peek.line));
                }
                let t = self.expect(It::RightDelim, "else")?;
                return Ok(Act::Else(t.pos, t.line));
            }
            It::End => {
                let t = self.expect(It::RightDelim, "end")?;
                return Ok(Act::End(t.pos, t.line));
            }
            It::If => return Ok(Act::Node(Node::If(self.parse_control("if")?))),
            It::Range => return Ok(Act::Node(Node::Range(self.parse_control("range")?))),
            It::With => return Ok(Act::Node(Node::With(self.parse_control("with")?))),
            It::Template => return self.template_control(),
            _ => {}
        }
        self.backup();
        let token = self.peek();
        let mut pipe = self.pipeline("command", It::RightDelim)?;
        if pipe.decl.is_empty() {
            pipe.commands.push(CommandNode {
                pos: pos(&token),
                args: vec![Expr::Identifier(pos(&token), SmolStr::from(PRINT_FN))],
            });
        }
        Ok(Act::Node(Node::Action(ActionNode {
            pos: pos(&token),
            pipe,
        })))
    }

    fn parse_control(&mut self, context: &str) -> PResult<BranchNode> {
        let nvars = self.vars.len();
        let r = self.parse_control_inner(context);
        self.vars.truncate(nvars);
        r
    }

    fn parse_control_inner(&mut self, context: &str) -> PResult<BranchNode> {
        let pipe = self.pipeline(context, It::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let res = self.item_list();
        if context == "range" {
            self.range_depth -= 1;
        }
        let (list, next) = res?;
        let mut else_list = None;
        match next {
            Act::End(..) => {}
            Act::Else(p, l) => {
                let peek = self.peek();
                if context == "if" && peek.typ == It::If {
                    self.next();
                    let inner = self.parse_control("if")?;
                    else_list = Some(ListNode {
                        pos: Pos::new(p, l),
                        nodes: vec![Node::If(inner)],
                    });
                } else if context == "with" && peek.typ == It::With {
                    self.next();
                    let inner = self.parse_control("with")?;
                    else_list = Some(ListNode {
                        pos: Pos::new(p, l),
                        nodes: vec![Node::With(inner)],
                    });
                } else {
                    let (list2, next2) = self.item_list()?;
                    match next2 {
                        Act::End(..) => {}
                        _ => return Err(self.errorf("expected end; found {{else}}")),
                    }
                    else_list = Some(list2);
                }
            }
            Act::Node(_) => unreachable_node()?,
        }
        Ok(BranchNode {
            pos: pipe.pos,
            pipe,
            body: list,
            else_body: else_list,
        })
    }

    fn template_name(&mut self, token: &Item, context: &str) -> PResult<String> {
        match token.typ {
            It::Str | It::RawString => {
                unquote(&token.val).map_err(|_| self.errorf("invalid syntax"))
            }
            _ => Err(self.unexpected(token, context)),
        }
    }

    fn template_control(&mut self) -> PResult<Act> {
        let context = "template clause";
        let token = self.next_non_space();
        let name = self.template_name(&token, context)?;
        let mut pipe = None;
        if self.next_non_space().typ != It::RightDelim {
            self.backup();
            pipe = Some(self.pipeline(context, It::RightDelim)?);
        }
        Ok(Act::Node(Node::Template(TemplateNode {
            pos: pos(&token),
            name: SmolStr::from(name),
            pipe,
        })))
    }

    fn block_control(&mut self) -> PResult<Act> {
        let context = "block clause";
        let token = self.next_non_space();
        let name = self.template_name(&token, context)?;
        let pipe = self.pipeline(context, It::RightDelim)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let saved_depth = std::mem::replace(&mut self.range_depth, 0);
        let (list, end) = self.item_list()?;
        self.vars = saved_vars;
        self.range_depth = saved_depth;
        match end {
            Act::End(..) => {}
            _ => return Err(self.errorf(format!("unexpected {{{{else}}}} in {context}"))),
        }
        self.defines.push(DefineNode {
            pos: pos(&token),
            name: SmolStr::from(name.as_str()),
            body: list,
        });
        Ok(Act::Node(Node::Template(TemplateNode {
            pos: pos(&token),
            name: SmolStr::from(name),
            pipe: Some(pipe),
        })))
    }

    fn pipeline(&mut self, context: &str, end: It) -> PResult<PipeNode> {
        let token = self.peek_non_space();
        let mut pipe = PipeNode {
            pos: pos(&token),
            decl: Vec::new(),
            commands: Vec::new(),
            is_assign: false,
        };
        'decls: loop {
            let v = self.peek_non_space();
            if v.typ == It::Variable {
                let save = self.idx;
                self.next_non_space();
                let next = self.peek_non_space();
                if next.typ == It::Assign || next.typ == It::Declare {
                    pipe.is_assign = next.typ == It::Assign;
                    self.next_non_space();
                    pipe.decl.push(SmolStr::from(v.val.as_str()));
                    self.vars.push(v.val.clone());
                } else if next.typ == It::Char && next.val == "," {
                    self.next_non_space();
                    pipe.decl.push(SmolStr::from(v.val.as_str()));
                    self.vars.push(v.val.clone());
                    if context == "range" && pipe.decl.len() < 2 {
                        match self.peek_non_space().typ {
                            It::Variable | It::RightDelim | It::RightParen => continue 'decls,
                            _ => return Err(self.errorf("range can only initialize variables")),
                        }
                    }
                    return Err(self.errorf(format!("too many declarations in {context}")));
                } else {
                    // Not a declaration: `$x` is an operand.
                    self.idx = save;
                }
            }
            break;
        }
        let mut stage = 0usize;
        loop {
            let token = self.next_non_space();
            match token.typ {
                t if t == end => {
                    self.check_pipeline(&pipe, context)?;
                    return Ok(pipe);
                }
                It::Bool
                | It::CharConstant
                | It::Complex
                | It::Dot
                | It::Field
                | It::Identifier
                | It::Number
                | It::Nil
                | It::RawString
                | It::Str
                | It::Variable
                | It::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.commands.push(rewrite_method(cmd, stage > 0));
                    stage += 1;
                }
                _ => return Err(self.unexpected(&token, context)),
            }
        }
    }

    fn check_pipeline(&self, pipe: &PipeNode, context: &str) -> PResult<()> {
        if pipe.commands.is_empty() {
            return Err(self.errorf(format!("missing value for {context}")));
        }
        for (i, c) in pipe.commands.iter().enumerate().skip(1) {
            if matches!(
                c.args.first(),
                Some(
                    Expr::Bool(..)
                        | Expr::Dot(_)
                        | Expr::Nil(_)
                        | Expr::Number(..)
                        | Expr::String(..)
                )
            ) {
                return Err(self.errorf(format!(
                    "non executable command in pipeline stage {}",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    fn command(&mut self) -> PResult<CommandNode> {
        let p = self.peek_non_space();
        let mut cmd = CommandNode {
            pos: pos(&p),
            args: Vec::new(),
        };
        loop {
            self.peek_non_space();
            if let Some(op) = self.operand()? {
                cmd.args.push(op);
            }
            let token = self.next();
            match token.typ {
                It::Space => continue,
                It::RightDelim | It::RightParen => self.backup(),
                It::Pipe => {}
                _ => return Err(self.unexpected(&token, "operand")),
            }
            break;
        }
        if cmd.args.is_empty() {
            return Err(self.errorf("empty command"));
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> PResult<Option<Expr>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().typ != It::Field {
            return Ok(Some(node));
        }
        let chain_pos = pos(&self.peek());
        let mut fields: Vec<SmolStr> = Vec::new();
        while self.peek().typ == It::Field {
            let f = self.next();
            fields.push(SmolStr::from(&f.val[1..]));
        }
        Ok(Some(match node {
            Expr::Field(p, mut base) => {
                base.extend(fields);
                Expr::Field(p, base)
            }
            Expr::Variable(p, name, mut base) => {
                base.extend(fields);
                Expr::Variable(p, name, base)
            }
            Expr::Bool(_, b) => {
                return Err(self.errorf(format!(
                    "unexpected . after term {}",
                    go_quote(if b { "true" } else { "false" })
                )))
            }
            Expr::String(..) | Expr::Number(..) | Expr::Nil(_) | Expr::Dot(_) => {
                let text = self.items[self.idx.saturating_sub(fields.len() + 1)]
                    .val
                    .clone();
                return Err(self.errorf(format!("unexpected . after term {}", go_quote(&text))));
            }
            other => Expr::Chain(chain_pos, Box::new(other), fields),
        }))
    }

    fn term(&mut self) -> PResult<Option<Expr>> {
        let token = self.next_non_space();
        let p = pos(&token);
        Ok(Some(match token.typ {
            It::Identifier => {
                if !(self.has_func)(&token.val) {
                    return Err(
                        self.errorf(format!("function {} not defined", go_quote(&token.val)))
                    );
                }
                if token.val == "json" {
                    self.uses_json = true;
                }
                Expr::Identifier(p, SmolStr::from(token.val.as_str()))
            }
            It::Dot => Expr::Dot(p),
            It::Nil => Expr::Nil(p),
            It::Variable => {
                let mut parts = token.val.split('.');
                let name = parts.next().unwrap_or("$").to_string();
                if !self.vars.contains(&name) {
                    return Err(self.errorf(format!("undefined variable {}", go_quote(&name))));
                }
                Expr::Variable(p, SmolStr::from(name), Vec::new())
            }
            It::Field => Expr::Field(p, vec![SmolStr::from(&token.val[1..])]),
            It::Bool => Expr::Bool(p, token.val == "true"),
            It::CharConstant | It::Complex | It::Number => Expr::Number(p, self.number(&token)?),
            It::LeftParen => {
                let pipe = self.pipeline("parenthesized pipeline", It::RightParen)?;
                Expr::Pipe(p, pipe)
            }
            It::Str | It::RawString => {
                let s = unquote(&token.val).map_err(|_| self.errorf("invalid syntax"))?;
                Expr::String(p, Arc::from(s.as_str()))
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }

    /// Go's `newNumber` followed by execution's `idealConstant` choice of type.
    fn number(&self, token: &Item) -> PResult<Number> {
        let text = token.val.as_str();
        if token.typ == It::CharConstant {
            let (v, _, tail) =
                unquote_char(&text[1..], '\'').map_err(|_| self.errorf("invalid syntax"))?;
            if tail != "'" {
                return Err(self.errorf(format!("malformed character constant: {text}")));
            }
            return Ok(Number::Int(i64::from(v)));
        }
        if token.typ == It::Complex || text.ends_with('i') {
            return Err(self.errorf(format!("complex constants are not supported: {text}")));
        }
        let u = parse_uint_base0(text);
        let i = parse_int_base0(text);
        let mut is_float = false;
        let mut f = 0.0;
        if let Some(i) = i {
            f = i as f64;
            is_float = true;
        } else if let Some(u) = u {
            f = u as f64;
            is_float = true;
        } else if let Some(x) = parse_go_float(text) {
            if !text.contains(['.', 'e', 'E', 'p', 'P']) {
                return Err(self.errorf(format!("integer overflow: {}", go_quote(text))));
            }
            f = x;
            is_float = true;
        }
        if i.is_none() && u.is_none() && !is_float {
            return Err(self.errorf(format!("illegal number syntax: {}", go_quote(text))));
        }
        let is_hex_int = text.len() > 2
            && text.starts_with('0')
            && matches!(text.as_bytes()[1], b'x' | b'X')
            && !text.contains(['p', 'P']);
        if !is_hex_int && text.contains(['.', 'e', 'E', 'p', 'P']) {
            return Ok(Number::Float(f));
        }
        if let Some(i) = i {
            return Ok(Number::Int(i));
        }
        if let Some(u) = u {
            return Ok(Number::Uint(u));
        }
        // A float literal without a float marker can't reach here.
        Ok(Number::Float(f))
    }
}

fn unreachable_node() -> PResult<()> {
    Err(ParseError(
        "template: internal error: unexpected node".into(),
    ))
}

/// Rewrites a command whose first operand is a field chain used as a method:
/// `.A.Label "x"` (arguments) or `... | .A.Label` (a later pipeline stage,
/// which receives the piped value as its last argument).
fn rewrite_method(cmd: CommandNode, piped: bool) -> CommandNode {
    if cmd.args.len() < 2 && !piped {
        return cmd;
    }
    let mut args = cmd.args.into_iter();
    let first = args.next();
    let rest: Vec<Expr> = args.collect();
    let (recv, name) = match first {
        Some(Expr::Field(p, mut fields)) if !fields.is_empty() => {
            let name = fields.pop().unwrap_or_default();
            (
                if fields.is_empty() {
                    Expr::Dot(p)
                } else {
                    Expr::Field(p, fields)
                },
                (p, name),
            )
        }
        Some(Expr::Variable(p, v, mut fields)) if !fields.is_empty() => {
            let name = fields.pop().unwrap_or_default();
            (Expr::Variable(p, v, fields), (p, name))
        }
        Some(Expr::Chain(p, inner, mut fields)) if !fields.is_empty() => {
            let name = fields.pop().unwrap_or_default();
            (
                if fields.is_empty() {
                    *inner
                } else {
                    Expr::Chain(p, inner, fields)
                },
                (p, name),
            )
        }
        other => {
            let mut args: Vec<Expr> = other.into_iter().collect();
            args.extend(rest);
            return CommandNode { pos: cmd.pos, args };
        }
    };
    let (p, name) = name;
    let mut args = vec![
        Expr::Identifier(p, SmolStr::from(METHOD_FN)),
        recv,
        Expr::String(p, Arc::from(name.as_str())),
    ];
    args.extend(rest);
    CommandNode { pos: cmd.pos, args }
}

/// Parses `src` with Go's grammar. `has_func` tells which function names
/// exist (Go checks them at parse time).
pub fn parse(src: &str, has_func: &dyn Fn(&str) -> bool) -> Result<Parsed, ParseError> {
    let items = Lexer {
        input: src,
        start: 0,
        pos: 0,
        items: Vec::new(),
        paren_depth: 0,
    }
    .run();
    let mut p = Parser {
        items,
        idx: 0,
        hi: 0,
        vars: vec!["$".into()],
        range_depth: 0,
        action_line: 0,
        has_func,
        defines: Vec::new(),
        uses_json: false,
    };
    let root = p.parse()?;
    Ok(Parsed {
        root,
        defines: p.defines,
        uses_json: p.uses_json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        let f = |name: &str| matches!(name, "printf" | "json" | "len" | "index" | "upper");
        match parse(src, &f) {
            Ok(_) => "ok".into(),
            Err(ParseError(e)) => e,
        }
    }

    #[test]
    fn go_parse_errors() {
        // Messages as produced by Go's text/template/parse.
        assert_eq!(
            err("{{foo}}"),
            r#"template: :1: function "foo" not defined"#
        );
        assert_eq!(
            err("a\n{{.X | foo}}"),
            r#"template: :2: function "foo" not defined"#
        );
        assert_eq!(err("{{.X"), "template: :1: unclosed action");
        assert_eq!(
            err("{{.X\n\n"),
            "template: :3: unclosed action started at :1"
        );
        assert_eq!(err("{{if .X}}"), "template: :1: unexpected EOF");
        assert_eq!(err("{{end}}"), "template: :1: unexpected {{end}}");
        assert_eq!(err("{{else}}"), "template: :1: unexpected {{else}}");
        assert_eq!(err("{{if}}{{end}}"), "template: :1: missing value for if");
        assert_eq!(err("{{}}"), "template: :1: missing value for command");
        assert_eq!(
            err("{{.X | 1}}"),
            "template: :1: non executable command in pipeline stage 2"
        );
        assert_eq!(err("{{$x}}"), r#"template: :1: undefined variable "$x""#);
        assert_eq!(
            err("{{with $x := 1}}{{end}}{{$x}}"),
            r#"template: :1: undefined variable "$x""#
        );
        assert_eq!(
            err(r#"{{"abc}}"#),
            "template: :1: unterminated quoted string"
        );
        assert_eq!(err("{{.X+1}}"), "template: :1: bad character U+002B '+'");
        assert_eq!(err("{{(.X}}"), "template: :1: unclosed left paren");
        assert_eq!(err("{{.X)}}"), "template: :1: unexpected right paren");
        assert_eq!(
            err("{{break}}"),
            "template: :1: {{break}} outside {{range}}"
        );
        assert_eq!(
            err("{{.X #}}"),
            r##"template: :1: unexpected "#" in operand"##
        );
        assert_eq!(
            err("{{/* x */ .X}}"),
            "template: :1: comment ends before closing delimiter"
        );
        assert_eq!(err("{{/* x"), "template: :1: unclosed comment");
        assert_eq!(err("{{3x}}"), r#"template: :1: bad number syntax: "3x""#);
        assert_eq!(
            err(r#"{{"x".Y}}"#),
            r#"template: :1: unexpected . after term "\"x\"""#
        );
        assert_eq!(
            err("{{range $i, $v, $w := .X}}{{end}}"),
            "template: :1: too many declarations in range"
        );
        assert_eq!(
            err("{{range $i, 1}}{{end}}"),
            "template: :1: range can only initialize variables"
        );
        assert_eq!(
            err("{{$x, $y := 1}}"),
            "template: :1: too many declarations in command"
        );
        assert_eq!(
            err("{{.}}{{.X | printf \"%d\" | nope}}"),
            r#"template: :1: function "nope" not defined"#
        );
        assert_eq!(
            err("{{(1)\"abcdefghijkl\"}}"),
            r#"template: :1: unexpected "\"abcdefghi"... in operand"#
        );
        assert_eq!(
            err("{{template .X}}"),
            r#"template: :1: unexpected ".X" in template clause"#
        );
        assert_eq!(
            err("{{template if}}"),
            r#"template: :1: unexpected <if> in template clause"#
        );
    }

    #[test]
    fn valid_templates_parse() {
        for src in [
            "",
            "plain",
            "{{.X}}",
            "{{- .X -}}",
            "{{/* c */}}",
            "{{if .X}}a{{else if .Y}}b{{else}}c{{end}}",
            "{{with $x := .X}}{{$x}}{{else with .Y}}{{end}}",
            "{{range $i, $v := .X}}{{$i}}{{$v}}{{break}}{{continue}}{{end}}",
            "{{range .X}}{{end}}{{$}}",
            "{{printf \"%d\" 3 | printf \"%s\"}}",
            "{{(index .X 0).Y}}",
            "{{$x := 1}}{{$x = 2}}{{$x}}",
            "{{define \"t\"}}T{{end}}{{template \"t\" .}}",
            "{{block \"b\" .}}B{{end}}",
            "{{json .}}",
            "{{.X 1}}",
            "{{'a'}} {{0x1F}} {{1e3}} {{-1}} {{1_000}} {{`raw`}} {{nil | printf \"%v\"}}",
        ] {
            assert_eq!(err(src), "ok", "{src}");
        }
    }

    #[test]
    fn numbers_follow_go_constant_rules() {
        let f = |_: &str| true;
        let get = |src: &str| -> Number {
            let parsed = parse(src, &f).unwrap();
            match &parsed.root.nodes[0] {
                Node::Action(a) => match &a.pipe.commands[0].args[0] {
                    Expr::Number(_, n) => *n,
                    e => panic!("{e:?}"),
                },
                n => panic!("{n:?}"),
            }
        };
        assert_eq!(get("{{1}}"), Number::Int(1));
        assert_eq!(get("{{1.0}}"), Number::Float(1.0));
        assert_eq!(get("{{1e3}}"), Number::Float(1000.0));
        assert_eq!(get("{{0x1E}}"), Number::Int(30));
        assert_eq!(get("{{0o17}}"), Number::Int(15));
        assert_eq!(get("{{017}}"), Number::Int(15));
        assert_eq!(get("{{'a'}}"), Number::Int(97));
        assert_eq!(get("{{-5}}"), Number::Int(-5));
        assert_eq!(get("{{18446744073709551615}}"), Number::Uint(u64::MAX));
    }

    #[test]
    fn trim_markers_trim_text() {
        let f = |_: &str| true;
        let parsed = parse("a  {{- 1 -}}  \n b", &f).unwrap();
        let texts: Vec<String> = parsed
            .root
            .nodes
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.text.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn unquote_matches_strconv() {
        assert_eq!(unquote(r#""a\tb\u00e9\x41\101""#).unwrap(), "a\tbéAA");
        assert_eq!(unquote("`a\\n`").unwrap(), "a\\n");
        assert!(unquote(r#""\'""#).is_err());
        assert!(unquote(r#""\q""#).is_err());
    }
}
