//! Regular-expression templates in node-keyed tables.
//!
//! A group row can hold one value for many nodes by computing it from the node
//! name, as xCAT does:
//! - `/pattern/replacement/`: the node name with the first match of `pattern`
//!   replaced (`$1` etc. refer to captures);
//! - `|pattern|replacement|`: like the above, but every parenthesised part of
//!   the replacement is evaluated as integer arithmetic after substitution,
//!   e.g. `|node(\d+)|10.0.0.($1+0)|` gives `10.0.0.7` for `node007`.
//!
//! Numbers are read as decimal (`010` is ten): Perl would read a literal with a
//! leading zero as octal, which is never what a node-numbering scheme means.
//! A part that is a bare number after substitution (`($1)` of `c01`) keeps
//! its digits, zeros included; `($1+0)` drops them.

use regex::Regex;

/// A parsed template, ready to apply to many node names.
#[derive(Debug, Clone)]
pub struct Template {
    re: Regex,
    /// Replacement in `regex` crate syntax.
    replacement: String,
    /// For `|...|...|` with parentheses: the parts of the replacement.
    segments: Vec<Segment>,
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    Arith(String),
}

/// Does `value` look like a template (rather than a literal value)?
pub fn is_template(value: &str) -> bool {
    split(value).is_some()
}

fn split(value: &str) -> Option<(&str, &str, bool)> {
    let b = value.as_bytes();
    if b.len() < 3 {
        return None;
    }
    let (first, last) = (b[0], b[b.len() - 1]);
    if first == b'/' && last == b'/' {
        let inner = &value[1..value.len() - 1];
        let (pat, rep) = inner.split_once('/')?;
        if rep.contains('/') {
            return None;
        }
        Some((pat, rep, false))
    } else if first == b'|' && last == b'|' {
        let inner = &value[1..value.len() - 1];
        let (pat, rep) = inner.split_once('|')?;
        Some((pat, rep, true))
    } else {
        None
    }
}

/// Convert a Perl replacement (`$1`, `${1}`, `\1`) into `regex` syntax.
fn perl_replacement(rep: &str) -> String {
    let mut out = String::with_capacity(rep.len() + 8);
    let chars: Vec<char> = rep.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if (c == '$' || c == '\\') && i + 1 < chars.len() && chars[i + 1].is_ascii_digit() {
            let mut j = i + 1;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            let n: String = chars[i + 1..j].iter().collect();
            out.push_str(&format!("${{{n}}}"));
            i = j;
        } else if c == '$' && i + 1 < chars.len() && chars[i + 1] == '{' {
            if let Some(end) = chars[i + 2..].iter().position(|&c| c == '}') {
                let name: String = chars[i + 2..i + 2 + end].iter().collect();
                out.push_str(&format!("${{{name}}}"));
                i = i + 3 + end;
            } else {
                out.push_str("$$");
                i += 1;
            }
        } else if c == '$' {
            out.push_str("$$");
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

impl Template {
    /// Parse a template value; None when `value` is a plain value or its
    /// pattern is not a valid regular expression.
    pub fn parse(value: &str) -> Option<Template> {
        let (pat, rep, arithmetic) = split(value)?;
        let re = Regex::new(pat).ok()?;
        let replacement = perl_replacement(rep);
        let segments = if arithmetic && replacement.contains('(') {
            segments(&replacement)?
        } else {
            Vec::new()
        };
        Some(Template {
            re,
            replacement,
            segments,
        })
    }

    /// The value for `node`; None when the result is empty ("not set") or the
    /// arithmetic cannot be evaluated.
    pub fn apply(&self, node: &str) -> Option<String> {
        let out = if self.segments.is_empty() {
            self.re
                .replacen(node, 1, self.replacement.as_str())
                .into_owned()
        } else {
            // Substitute captures into each part; evaluate the parenthesised ones.
            let caps = self.re.captures(node)?;
            let mut out = String::new();
            for seg in &self.segments {
                match seg {
                    Segment::Literal(l) => caps.expand(l, &mut out),
                    Segment::Arith(e) => {
                        let mut substituted = String::new();
                        caps.expand(e, &mut substituted);
                        out.push_str(&arith_part(&substituted)?);
                    }
                }
            }
            out
        };
        if out.is_empty() {
            None
        } else {
            Some(out)
        }
    }
}

/// One `( ... )` part after substitution: a bare number (`($1)` of `01`)
/// keeps its digits, leading zeros included, as xCAT's documented
/// `c($1)f($2)` naming does; anything else is evaluated.
fn arith_part(expr: &str) -> Option<String> {
    let inner = expr.trim().strip_prefix('(')?.strip_suffix(')')?.trim();
    if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
        return Some(inner.to_string());
    }
    eval_arith(expr).map(|v| v.to_string())
}

/// Split an arithmetic replacement into literal and `( ... )` parts; None
/// when the parentheses do not balance.
fn segments(rep: &str) -> Option<Vec<Segment>> {
    let chars: Vec<char> = rep.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '(' {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match chars.get(j)? {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            out.push(Segment::Arith(chars[i..=j].iter().collect()));
            i = j + 1;
        } else {
            let start = i;
            while i < chars.len() && chars[i] != '(' {
                i += 1;
            }
            out.push(Segment::Literal(chars[start..i].iter().collect()));
        }
    }
    Some(out)
}

/// Evaluate a value for `node`: templates are applied, plain values returned
/// as they are. Empty results mean "not set".
pub fn evaluate(value: &str, node: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    match Template::parse(value) {
        Some(t) => t.apply(node),
        None => Some(value.to_string()),
    }
}

/// Integer arithmetic: `+ - * / %`, unary minus, parentheses. Division
/// truncates toward zero (Perl's `use integer`). None on syntax errors,
/// overflow or division by zero.
pub fn eval_arith(expr: &str) -> Option<i64> {
    let toks: Vec<char> = expr.chars().filter(|c| !c.is_whitespace()).collect();
    let mut p = Arith { t: &toks, i: 0 };
    let v = p.expr(0)?;
    if p.i != toks.len() {
        return None;
    }
    Some(v)
}

struct Arith<'a> {
    t: &'a [char],
    i: usize,
}

impl Arith<'_> {
    fn expr(&mut self, depth: usize) -> Option<i64> {
        if depth > 64 {
            return None;
        }
        let mut v = self.term(depth)?;
        while let Some(&c) = self.t.get(self.i) {
            match c {
                '+' => {
                    self.i += 1;
                    v = v.checked_add(self.term(depth)?)?;
                }
                '-' => {
                    self.i += 1;
                    v = v.checked_sub(self.term(depth)?)?;
                }
                _ => break,
            }
        }
        Some(v)
    }

    fn term(&mut self, depth: usize) -> Option<i64> {
        let mut v = self.factor(depth)?;
        while let Some(&c) = self.t.get(self.i) {
            match c {
                '*' => {
                    self.i += 1;
                    v = v.checked_mul(self.factor(depth)?)?;
                }
                '/' => {
                    self.i += 1;
                    v = v.checked_div(self.factor(depth)?)?;
                }
                '%' => {
                    self.i += 1;
                    v = v.checked_rem(self.factor(depth)?)?;
                }
                _ => break,
            }
        }
        Some(v)
    }

    fn factor(&mut self, depth: usize) -> Option<i64> {
        match self.t.get(self.i)? {
            '(' => {
                self.i += 1;
                let v = self.expr(depth + 1)?;
                if self.t.get(self.i) != Some(&')') {
                    return None;
                }
                self.i += 1;
                Some(v)
            }
            '-' => {
                self.i += 1;
                self.factor(depth + 1)?.checked_neg()
            }
            '+' => {
                self.i += 1;
                self.factor(depth + 1)
            }
            c if c.is_ascii_digit() => {
                let start = self.i;
                while self.t.get(self.i).is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                let s: String = self.t[start..self.i].iter().collect();
                s.parse::<i64>().ok()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic() {
        assert_eq!(eval_arith("(007+0)"), Some(7));
        assert_eq!(eval_arith("010"), Some(10));
        assert_eq!(eval_arith("2+3*4"), Some(14));
        assert_eq!(eval_arith("(2+3)*4"), Some(20));
        assert_eq!(eval_arith("7/2"), Some(3));
        assert_eq!(eval_arith("-7/2"), Some(-3));
        assert_eq!(eval_arith("10-2-3"), Some(5));
        assert_eq!(eval_arith("1/0"), None);
        assert_eq!(eval_arith("1+"), None);
        assert_eq!(eval_arith("(1"), None);
        assert_eq!(eval_arith("a"), None);
    }

    #[test]
    fn substitution_templates() {
        assert_eq!(
            evaluate("|node(\\d+)|10.0.0.($1+0)|", "node007").as_deref(),
            Some("10.0.0.7")
        );
        assert_eq!(
            evaluate("|\\D+(\\d+)|10.1.($1/256).($1%256)|", "node300").as_deref(),
            Some("10.1.1.44")
        );
        assert_eq!(
            evaluate("/node(\\d+)/bmc$1/", "node12").as_deref(),
            Some("bmc12")
        );
        assert_eq!(evaluate("/^.*$//", "node12"), None);
        assert_eq!(evaluate("|^.*$||", "node12"), None);
        assert_eq!(evaluate("|(.*)|${1}-ib|", "n1").as_deref(), Some("n1-ib"));
        assert_eq!(evaluate("plain", "n1").as_deref(), Some("plain"));
        assert_eq!(evaluate("", "n1"), None);
        assert!(!is_template("/a/b/c/"));
        assert!(is_template("/a/b/"));
    }
}
