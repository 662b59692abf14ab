//! The name-generating forms of a noderange atom (`node10+3`, `f[1-2]n[01-10,15]`,
//! `a01-a10`, `a01:a10`), as a [`Pattern`] that knows how many names it makes
//! before making any, and then makes them one at a time.
//!
//! Counting first is what lets the evaluator refuse `zz[0-1999999]` against
//! its budget in constant time, and generating one name at a time is what
//! keeps an accepted range from costing memory per name.

/// A sequence of fixed text and choices; each name is one pick per choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    segs: Vec<Seg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    /// One of these parts (a bracket's comma list, or the single range of
    /// the `+N` and `a-b` forms); never empty.
    Alt(Vec<Part>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    /// `from..=to`, zero-padded to `width` digits.
    Num {
        from: u64,
        to: u64,
        width: usize,
    },
}

impl Part {
    fn count(&self) -> u64 {
        match self {
            Part::Lit(_) => 1,
            Part::Num { from, to, .. } => (to - from).saturating_add(1),
        }
    }

    fn write(&self, k: u64, out: &mut String) {
        match self {
            Part::Lit(s) => out.push_str(s),
            Part::Num { from, width, .. } => {
                use std::fmt::Write as _;
                let _ = write!(out, "{:0width$}", from + k, width = *width);
            }
        }
    }
}

impl Pattern {
    /// How many names the pattern makes (saturating: the caller compares it
    /// against a budget far below `u64::MAX`).
    pub(crate) fn count(&self) -> u64 {
        self.segs
            .iter()
            .map(|s| match s {
                Seg::Lit(_) => 1,
                Seg::Alt(parts) => parts.iter().fold(0u64, |n, p| n.saturating_add(p.count())),
            })
            .fold(1u64, u64::saturating_mul)
    }

    /// Call `f` with each name in order (odometer order: the last choice
    /// turns fastest), stopping at the first error.
    pub(crate) fn for_each<E>(&self, mut f: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
        // Per choice: which part, and which value inside it.
        let mut pos: Vec<(usize, u64)> = vec![(0, 0); self.segs.len()];
        let mut name = String::new();
        loop {
            name.clear();
            for (seg, &(part, k)) in self.segs.iter().zip(&pos) {
                match seg {
                    Seg::Lit(s) => name.push_str(s),
                    Seg::Alt(parts) => parts[part].write(k, &mut name),
                }
            }
            f(&name)?;
            if !self.advance(&mut pos) {
                return Ok(());
            }
        }
    }

    /// Step the odometer; false once every name was made.
    fn advance(&self, pos: &mut [(usize, u64)]) -> bool {
        for (seg, p) in self.segs.iter().zip(pos.iter_mut()).rev() {
            let Seg::Alt(parts) = seg else { continue };
            if p.1 + 1 < parts[p.0].count() {
                p.1 += 1;
                return true;
            }
            if p.0 + 1 < parts.len() {
                *p = (p.0 + 1, 0);
                return true;
            }
            *p = (0, 0);
        }
        false
    }

    /// Every name, collected (for tests and small patterns).
    #[cfg(test)]
    pub(crate) fn names(&self) -> Vec<String> {
        let mut v = Vec::new();
        let _ = self.for_each(|n| {
            v.push(n.to_string());
            Ok::<(), ()>(())
        });
        v
    }
}

/// The name-generating form `text` is, if any. `Ok(None)`: none of them (a
/// plain name). `Err`: one of them, malformed.
pub(crate) fn pattern(text: &str) -> Result<Option<Pattern>, String> {
    if let Some(p) = plus(text)? {
        return Ok(Some(p));
    }
    if text.contains('[') {
        return brackets(text).map(Some);
    }
    dash_range(text)
}

fn single_range(prefix: &str, from: u64, to: u64, width: usize, suffix: &str) -> Pattern {
    Pattern {
        segs: vec![
            Seg::Lit(prefix.to_string()),
            Seg::Alt(vec![Part::Num { from, to, width }]),
            Seg::Lit(suffix.to_string()),
        ],
    }
}

/// `node10+3` -> node10..node13.
fn plus(text: &str) -> Result<Option<Pattern>, String> {
    let Some((left, inc)) = text.rsplit_once('+') else {
        return Ok(None);
    };
    if inc.is_empty() || !inc.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let digits = left.len() - left.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return Ok(None);
    }
    let (prefix, num) = left.split_at(left.len() - digits);
    let start: u64 = num.parse().map_err(|_| "number too large".to_string())?;
    let inc: u64 = inc.parse().map_err(|_| "number too large".to_string())?;
    let end = start.checked_add(inc).ok_or("number too large")?;
    Ok(Some(single_range(prefix, start, end, digits, "")))
}

/// The parts inside one bracket: `1,3,5`, `01-10`, `1:4`, mixed; non-numeric
/// items are taken literally (`rack[a,b]`).
fn bracket_parts(inner: &str) -> Result<Vec<Part>, String> {
    let mut out = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some(p) = part.find(['-', ':']) else {
            out.push(Part::Lit(part.to_string()));
            continue;
        };
        let (a, b) = (&part[..p], &part[p + 1..]);
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        let (Ok(x), Ok(y)) = (a.parse::<u64>(), b.parse::<u64>()) else {
            return Err(format!("bad range '{part}' in brackets"));
        };
        if !digits(a) || !digits(b) {
            return Err(format!("bad range '{part}' in brackets"));
        }
        if x > y {
            return Err(format!("descending range '{part}' in brackets"));
        }
        out.push(Part::Num {
            from: x,
            to: y,
            width: a.len(),
        });
    }
    if out.is_empty() {
        return Err("empty brackets".into());
    }
    Ok(out)
}

/// `f[1-2]n[01-03]` -> the cartesian product, in order.
fn brackets(text: &str) -> Result<Pattern, String> {
    let mut segs = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let close = rest[open..]
            .find(']')
            .ok_or("unbalanced brackets: '[' without ']'")?
            + open;
        segs.push(Seg::Lit(rest[..open].to_string()));
        segs.push(Seg::Alt(bracket_parts(&rest[open + 1..close])?));
        rest = &rest[close + 1..];
    }
    segs.push(Seg::Lit(rest.to_string()));
    // Bracket contents end at the first ']', so a ']' left in a name can
    // only come from the text between brackets.
    if segs
        .iter()
        .any(|s| matches!(s, Seg::Lit(l) if l.contains(']')))
    {
        return Err("unbalanced brackets: ']' without '['".into());
    }
    Ok(Pattern { segs })
}

#[derive(Debug, PartialEq, Eq)]
enum Run<'a> {
    Text(&'a str),
    Num(&'a str),
}

fn runs(s: &str) -> Vec<Run<'_>> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let digit = b[i].is_ascii_digit();
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() == digit {
            i += 1;
        }
        let part = &s[start..i];
        out.push(if digit {
            Run::Num(part)
        } else {
            Run::Text(part)
        });
    }
    out
}

fn run_text<'a>(r: &[Run<'a>]) -> String {
    r.iter()
        .map(|r| match r {
            Run::Text(t) | Run::Num(t) => *t,
        })
        .collect()
}

/// `node01-node10` or `node01:node10`: same shape, exactly one numeric run differs.
fn dash_range(text: &str) -> Result<Option<Pattern>, String> {
    let (a, b) = if text.matches(':').count() == 1 {
        text.split_once(':').unwrap_or((text, ""))
    } else {
        let hyphens: Vec<usize> = text.match_indices('-').map(|(i, _)| i).collect();
        if hyphens.len() % 2 != 1 {
            return Ok(None);
        }
        // Names may contain '-' themselves: split at the middle hyphen.
        let mid = hyphens[hyphens.len() / 2];
        (&text[..mid], &text[mid + 1..])
    };
    if a.is_empty() || b.is_empty() {
        return Ok(None);
    }
    let (ra, rb) = (runs(a), runs(b));
    if ra.len() != rb.len() {
        return Ok(None);
    }
    let mut differing = None;
    for (i, (x, y)) in ra.iter().zip(&rb).enumerate() {
        match (x, y) {
            (Run::Text(p), Run::Text(q)) if p == q => {}
            (Run::Num(p), Run::Num(q)) => {
                if p != q {
                    if differing.is_some() {
                        return Ok(None);
                    }
                    differing = Some(i);
                }
            }
            _ => return Ok(None),
        }
    }
    let Some(d) = differing else {
        return Ok(Some(Pattern {
            segs: vec![Seg::Lit(a.to_string())],
        }));
    };
    let (Run::Num(sa), Run::Num(sb)) = (&ra[d], &rb[d]) else {
        return Ok(None);
    };
    let x: u64 = sa.parse().map_err(|_| "number too large".to_string())?;
    let y: u64 = sb.parse().map_err(|_| "number too large".to_string())?;
    if x > y {
        return Err(format!("descending range {a}-{b}"));
    }
    Ok(Some(single_range(
        &run_text(&ra[..d]),
        x,
        y,
        sa.len(),
        &run_text(&ra[d + 1..]),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<String> {
        pattern(text).unwrap().expect("a pattern").names()
    }

    #[test]
    fn forms_and_counts() {
        assert_eq!(names("n10+2"), ["n10", "n11", "n12"]);
        assert_eq!(names("f[1-2]n[01-02,x]").len(), 6);
        assert_eq!(
            names("f[1-2]n[01-02,x]"),
            ["f1n01", "f1n02", "f1nx", "f2n01", "f2n02", "f2nx"]
        );
        assert_eq!(names("a08-a10"), ["a08", "a09", "a10"]);
        assert_eq!(names("r1-a-r3-a"), ["r1-a", "r2-a", "r3-a"]);
        assert_eq!(pattern("plain").unwrap(), None);
        for t in [
            "n10+2",
            "f[1-2]n[01-02,x]",
            "a08-a10",
            "a1:a4",
            "x[1-3][7,9]",
        ] {
            let p = pattern(t).unwrap().unwrap();
            assert_eq!(p.count(), p.names().len() as u64, "{t}");
        }
    }

    #[test]
    fn a_huge_pattern_is_counted_without_being_made() {
        let p = pattern("zz[0-1999999]y[0-1999999]").unwrap().unwrap();
        assert_eq!(p.count(), 4_000_000_000_000);
        let p = pattern("z[0-18446744073709551615]").unwrap().unwrap();
        assert_eq!(p.count(), u64::MAX, "saturates instead of wrapping");
        let p = pattern("z[0-18446744073709551615][1-2]").unwrap().unwrap();
        assert_eq!(p.count(), u64::MAX);
    }

    #[test]
    fn stops_at_the_first_error() {
        let p = pattern("n[1-1000000]").unwrap().unwrap();
        let mut seen = 0;
        let r = p.for_each(|_| {
            seen += 1;
            if seen == 3 {
                Err("stop")
            } else {
                Ok(())
            }
        });
        assert_eq!((r, seen), (Err("stop"), 3));
    }
}
