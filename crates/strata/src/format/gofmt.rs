//! Go's number formatting (`strconv.FormatFloat`, `fmt`'s `%v`/`%.Ng`), Go's
//! `fmt.Sprint` rendering of template values, `strconv.Quote`, and an
//! `encoding/json`-compatible encoder.
//!
//! Everything here reproduces the byte output of the Go standard library,
//! because docker prints through it.

use std::fmt::Write as _;

use gotmpl::Value;

// ---------------------------------------------------------------------------
// Floats

/// Decimal digits of `|v|` as Go's `strconv` `decimal` sees them: the digit
/// string without leading or trailing zeros, and the decimal point position
/// `dp` (value = 0.d1d2d3... × 10^dp). Zero is `([], 0)`.
///
/// `sig = None` gives the shortest digits that round-trip (Go's `prec = -1`);
/// `Some(n)` rounds the exact binary value to `n` significant digits, ties to
/// even, as Go's `decimal.Round` does (Rust's exact formatting rounds the same
/// way).
fn float_digits(v: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    let a = v.abs();
    if a == 0.0 {
        return (Vec::new(), 0);
    }
    let s = match sig {
        None => format!("{a:e}"),
        Some(n) => format!("{:.*e}", n.max(1) - 1, a),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits.is_empty() {
        return (Vec::new(), 0);
    }
    (digits, exp + 1)
}

/// Go's `fmtE`: `d.ddddde±dd`.
fn fmt_e(out: &mut String, neg: bool, d: &[u8], dp: i32, prec: i32, ch: char) {
    if neg {
        out.push('-');
    }
    out.push(d.first().map_or('0', |&b| b as char));
    if prec > 0 {
        out.push('.');
        let nd = d.len() as i32;
        let mut i = 1;
        let m = nd.min(prec + 1);
        while i < m {
            out.push(d[i as usize] as char);
            i += 1;
        }
        while i <= prec {
            out.push('0');
            i += 1;
        }
    }
    out.push(ch);
    let mut exp = if d.is_empty() { 0 } else { dp - 1 };
    if exp < 0 {
        out.push('-');
        exp = -exp;
    } else {
        out.push('+');
    }
    if exp < 10 {
        out.push('0');
    }
    let _ = write!(out, "{exp}");
}

/// Go's `fmtF`: `ddd.ddd` with exactly `prec` fraction digits.
fn fmt_f(out: &mut String, neg: bool, d: &[u8], dp: i32, prec: i32) {
    if neg {
        out.push('-');
    }
    let nd = d.len() as i32;
    if dp > 0 {
        let m = nd.min(dp);
        for &b in &d[..m as usize] {
            out.push(b as char);
        }
        for _ in m..dp {
            out.push('0');
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            let j = dp + i - 1;
            out.push(if 0 <= j && j < nd {
                d[j as usize] as char
            } else {
                '0'
            });
        }
    }
}

fn special_float(v: f64, plus_inf: &str) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 {
            plus_inf.into()
        } else {
            "-Inf".into()
        })
    } else {
        None
    }
}

/// Go's `strconv.FormatFloat(v, 'g', prec, 64)`; `prec = None` is `-1`
/// (shortest). `fmt`'s `%v` is `format_g(v, None)` and `%.3g` is
/// `format_g(v, Some(3))`.
pub fn format_g(v: f64, prec: Option<usize>) -> String {
    if let Some(s) = special_float(v, "+Inf") {
        return s;
    }
    let shortest = prec.is_none();
    let (d, dp) = float_digits(v, prec.map(|p| p.max(1)));
    let nd = d.len() as i32;
    let mut prec = match prec {
        None => nd,
        Some(p) => p.max(1) as i32,
    };
    let mut eprec = prec;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    let neg = v.is_sign_negative();
    let mut out = String::new();
    if exp < -4 || exp >= eprec {
        if prec > nd {
            prec = nd;
        }
        fmt_e(&mut out, neg, &d, dp, prec - 1, 'e');
    } else {
        if prec > dp {
            prec = nd;
        }
        fmt_f(&mut out, neg, &d, dp, (prec - dp).max(0));
    }
    out
}

/// `encoding/json`'s float64 encoding. `None` for NaN and infinities, which
/// Go refuses to encode.
pub fn json_float(v: f64) -> Option<String> {
    if !v.is_finite() {
        return None;
    }
    let a = v.abs();
    let (d, dp) = float_digits(v, None);
    let nd = d.len() as i32;
    let mut out = String::new();
    let neg = v.is_sign_negative();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        fmt_e(&mut out, neg, &d, dp, nd - 1, 'e');
        // Go cleans up e-09 to e-9.
        let b = out.as_bytes();
        let n = b.len();
        if n >= 4 && b[n - 4] == b'e' && b[n - 3] == b'-' && b[n - 2] == b'0' {
            out.remove(n - 2);
        }
    } else {
        fmt_f(&mut out, neg, &d, dp, (nd - dp).max(0));
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// fmt.Sprint of template values

/// Go's `fmt.Sprint` of one value (`%v`). `is_null` tells whether a value is
/// the marker standing for a JSON null (a Go nil pointer), printed `<nil>`.
pub fn sprint_value(out: &mut String, v: &Value, is_null: &dyn Fn(&Value) -> bool) {
    if is_null(v) {
        out.push_str("<nil>");
        return;
    }
    match v {
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Uint(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => out.push_str(&format_g(*f, None)),
        Value::String(s) => out.push_str(s),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                sprint_value(out, item, is_null);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                sprint_value(out, item, is_null);
            }
            out.push(']');
        }
        Value::Function(_) => out.push_str("<func>"),
    }
}

/// Go's `fmt.Sprint(args...)`: a space between two operands when neither is
/// a string.
pub fn sprint(args: &[Value], is_null: &dyn Fn(&Value) -> bool) -> String {
    let mut out = String::new();
    let is_str = |v: &Value| matches!(v, Value::String(_)) && !is_null(v);
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !is_str(&args[i - 1]) && !is_str(a) {
            out.push(' ');
        }
        sprint_value(&mut out, a, is_null);
    }
    out
}

/// Go's `fmt.Sprintln(args...)`: always a space between operands, and a
/// trailing newline.
pub fn sprintln(args: &[Value], is_null: &dyn Fn(&Value) -> bool) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        sprint_value(&mut out, a, is_null);
    }
    out.push('\n');
    out
}

// ---------------------------------------------------------------------------
// strconv.Quote

/// Approximation of Go's `unicode.IsPrint` for non-ASCII characters.
fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c as u32, 0xAD | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF))
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_print(c) => out.push(c),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Go's `%#U`: `U+0023 '#'`.
pub fn go_char_u(c: char) -> String {
    if is_print(c) {
        format!("U+{:04X} '{}'", c as u32, c)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

// ---------------------------------------------------------------------------
// encoding/json

/// Appends `s` as a JSON string exactly as Go's `encoding/json` does.
pub fn json_string(out: &mut String, s: &str, escape_html: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if escape_html => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xF) as usize] as char);
            }
            c if (c as u32) < 0x20 => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xF) as usize] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Error for values `encoding/json` cannot encode (NaN, infinities, funcs).
#[derive(Debug)]
pub struct Unsupported;

fn json_number(out: &mut String, n: &serde_json::Number) -> Result<(), Unsupported> {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else {
        out.push_str(&json_float(n.as_f64().unwrap_or(f64::NAN)).ok_or(Unsupported)?);
    }
    Ok(())
}

fn newline_indent(out: &mut String, indent: Option<&str>, depth: usize) {
    if let Some(ind) = indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(ind);
        }
    }
}

/// Encodes a `serde_json::Value` like Go's `json.Marshal` (`indent = None`)
/// or `json.MarshalIndent(v, "", indent)`. Object keys keep their order.
pub fn json_encode(
    out: &mut String,
    v: &serde_json::Value,
    escape_html: bool,
    indent: Option<&str>,
    depth: usize,
) -> Result<(), Unsupported> {
    use serde_json::Value as J;
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => json_number(out, n)?,
        J::String(s) => json_string(out, s, escape_html),
        J::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, indent, depth + 1);
                json_encode(out, item, escape_html, indent, depth + 1)?;
            }
            if !items.is_empty() {
                newline_indent(out, indent, depth);
            }
            out.push(']');
        }
        J::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, indent, depth + 1);
                json_string(out, k, escape_html);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                json_encode(out, item, escape_html, indent, depth + 1)?;
            }
            if !map.is_empty() {
                newline_indent(out, indent, depth);
            }
            out.push('}');
        }
    }
    Ok(())
}

/// Encodes a template value like Go's `json.Encoder` (docker's `json`
/// template function turns HTML escaping off). `lookup` maps a list or map that came
/// from the input data back to its original JSON (to keep key order);
/// `is_null` recognises the JSON-null marker. Maps not found by `lookup` are
/// encoded with sorted keys, as Go encodes its maps.
pub fn json_encode_value(
    out: &mut String,
    v: &Value,
    escape_html: bool,
    lookup: &dyn Fn(&Value) -> Option<serde_json::Value>,
    is_null: &dyn Fn(&Value) -> bool,
) -> Result<(), Unsupported> {
    if is_null(v) {
        out.push_str("null");
        return Ok(());
    }
    if let Some(orig) = lookup(v) {
        return json_encode(out, &orig, escape_html, None, 0);
    }
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Uint(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => out.push_str(&json_float(*f).ok_or(Unsupported)?),
        Value::String(s) => json_string(out, s, escape_html),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_encode_value(out, item, escape_html, lookup, is_null)?;
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(out, k, escape_html);
                out.push(':');
                json_encode_value(out, item, escape_html, lookup, is_null)?;
            }
            out.push('}');
        }
        Value::Function(_) => return Err(Unsupported),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_g_shortest_matches_go_percent_v() {
        // fmt.Sprint(float64(x)) in Go.
        assert_eq!(format_g(1.5, None), "1.5");
        assert_eq!(format_g(1.0, None), "1");
        assert_eq!(format_g(0.0, None), "0");
        assert_eq!(format_g(-0.0, None), "-0");
        assert_eq!(format_g(123456.0, None), "123456");
        assert_eq!(format_g(1234567.0, None), "1.234567e+06");
        assert_eq!(format_g(1e6, None), "1e+06");
        assert_eq!(format_g(1e21, None), "1e+21");
        assert_eq!(format_g(0.0001, None), "0.0001");
        assert_eq!(format_g(0.00001, None), "1e-05");
        assert_eq!(format_g(1e-100, None), "1e-100");
        assert_eq!(format_g(-2.5, None), "-2.5");
        assert_eq!(format_g(0.1 + 0.2, None), "0.30000000000000004");
        assert_eq!(format_g(f64::INFINITY, None), "+Inf");
        assert_eq!(format_g(f64::NAN, None), "NaN");
    }

    #[test]
    fn format_g_with_precision_matches_go() {
        // fmt.Sprintf("%.3g", x) in Go.
        assert_eq!(format_g(4.257224, Some(3)), "4.26");
        assert_eq!(format_g(999.0, Some(3)), "999");
        assert_eq!(format_g(999.9, Some(3)), "1e+03");
        assert_eq!(format_g(1.0, Some(3)), "1");
        assert_eq!(format_g(1.5, Some(3)), "1.5");
        assert_eq!(format_g(0.0, Some(3)), "0");
        assert_eq!(format_g(12.345, Some(4)), "12.35"); // 12.3450000000000006394884621841
        assert_eq!(format_g(0.125, Some(2)), "0.12"); // exact tie: half to even
        assert_eq!(format_g(0.375, Some(2)), "0.38");
        assert_eq!(format_g(100.0, Some(3)), "100");
        assert_eq!(format_g(0.000012345, Some(3)), "1.23e-05");
        assert_eq!(format_g(2.0, Some(0)), "2");
    }

    #[test]
    fn json_float_matches_encoding_json() {
        assert_eq!(json_float(1.0).unwrap(), "1");
        assert_eq!(json_float(1.5).unwrap(), "1.5");
        assert_eq!(json_float(1e20).unwrap(), "100000000000000000000");
        assert_eq!(json_float(1e21).unwrap(), "1e+21");
        assert_eq!(json_float(1e-7).unwrap(), "1e-7");
        assert_eq!(json_float(1.5e-10).unwrap(), "1.5e-10");
        assert_eq!(json_float(0.000001).unwrap(), "0.000001");
        assert_eq!(json_float(-0.0).unwrap(), "-0");
        assert!(json_float(f64::NAN).is_none());
    }

    #[test]
    fn json_string_escapes_like_go() {
        let mut s = String::new();
        json_string(&mut s, "a<b>&\"\\\n\t\u{1}\u{8}\u{c}\u{7f}\u{2028}é", true);
        assert_eq!(
            s,
            r#""a\u003cb\u003e\u0026\"\\\n\t\u0001\b\f"#.to_string() + "\u{7f}\\u2028é\""
        );
        let mut s = String::new();
        json_string(&mut s, "<a&b>", false);
        assert_eq!(s, "\"<a&b>\"");
    }

    #[test]
    fn json_indent_matches_marshal_indent() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":[],"c":{},"d":[1,{"x":null}]}"#).unwrap();
        let mut s = String::new();
        json_encode(&mut s, &v, true, Some("    "), 0).unwrap();
        assert_eq!(
            s,
            "{\n    \"b\": 1,\n    \"a\": [],\n    \"c\": {},\n    \"d\": [\n        1,\n        {\n            \"x\": null\n        }\n    ]\n}"
        );
    }

    #[test]
    fn quote_matches_strconv_quote() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
        assert_eq!(go_char_u('+'), "U+002B '+'");
    }
}
