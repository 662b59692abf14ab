//! Selection strings: `lsdef -w attr==value` and a dynamic group's
//! `wherevals` (several joined by `::`); `tabdump -w`'s row selections
//! ([`Where::parse_row`]), where `=~` is SQL's LIKE and values compare.

use regex::Regex;

use crate::Attrs;

/// One `attr OP value` test: `==`, `!=`, `=~` (regular expression, found
/// anywhere in the value) or `!~`.
#[derive(Debug, Clone)]
pub struct Where {
    pub attr: String,
    op: Op,
    pub value: String,
}

#[derive(Debug, Clone)]
enum Op {
    Eq,
    Ne,
    Match(Regex),
    NoMatch(Regex),
    /// `>`, `>=`, `<`, `<=`: the values compared as text, as a database
    /// compares text columns; an unset value passes none of them.
    Cmp(std::cmp::Ordering, bool),
}

const BAD: &str = "Incorrect selection string specified with -w flag.";

impl Where {
    /// Parse one test; the message is xCAT's for a malformed one.
    pub fn parse(text: &str) -> Result<Where, String> {
        // The operator is the first of these found, in this order, so a
        // value may itself contain `=`.
        for op in ["==", "!=", "=~", "!~"] {
            let Some((attr, value)) = text.split_once(op) else {
                continue;
            };
            if attr.is_empty() {
                return Err(BAD.into());
            }
            let regex = || Regex::new(value).map_err(|_| BAD.to_string());
            let op = match op {
                "==" => Op::Eq,
                "!=" => Op::Ne,
                "=~" => Op::Match(regex()?),
                _ => Op::NoMatch(regex()?),
            };
            return Ok(Where {
                attr: attr.to_string(),
                op,
                value: value.to_string(),
            });
        }
        Err(BAD.into())
    }

    /// One test on a table's row, as `tabdump -w` reads it: `==`, `!=`,
    /// `=~` and `!~` with SQL LIKE patterns (`%` any run of characters,
    /// `_` any one), and the comparisons `>`, `>=`, `<`, `<=`.
    pub fn parse_row(text: &str) -> Result<Where, String> {
        use std::cmp::Ordering::{Greater, Less};
        let ops = ["==", "!=", "=~", "!~", ">=", "<=", ">", "<"];
        let Some((op, attr, value)) = ops
            .iter()
            .find_map(|op| text.split_once(op).map(|(a, v)| (*op, a, v)))
        else {
            return Err(BAD.into());
        };
        if attr.is_empty() {
            return Err(BAD.into());
        }
        let op = match op {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "=~" => Op::Match(like(value)),
            "!~" => Op::NoMatch(like(value)),
            ">=" => Op::Cmp(Less, false),
            "<=" => Op::Cmp(Greater, false),
            ">" => Op::Cmp(Greater, true),
            _ => Op::Cmp(Less, true),
        };
        Ok(Where {
            attr: attr.to_string(),
            op,
            value: value.to_string(),
        })
    }

    /// Tests joined by `::` (a dynamic group's `wherevals`).
    pub fn parse_list(text: &str) -> Result<Vec<Where>, String> {
        text.split("::")
            .filter(|s| !s.is_empty())
            .map(Where::parse)
            .collect()
    }

    /// Does an object with these attributes pass? An unset attribute is
    /// the empty value.
    pub fn matches(&self, attrs: &Attrs) -> bool {
        let v = attrs.get(&self.attr).map_or("", String::as_str);
        match &self.op {
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
            Op::Match(r) => r.is_match(v),
            Op::NoMatch(r) => !r.is_match(v),
            // `(Greater, true)`: greater; `(Less, false)`: not less, etc.
            Op::Cmp(ord, wanted) => {
                attrs.contains_key(&self.attr) && (v.cmp(&self.value) == *ord) == *wanted
            }
        }
    }
}

/// A LIKE pattern as an anchored regular expression.
fn like(pattern: &str) -> Regex {
    let mut re = String::from("^");
    for c in pattern.chars() {
        match c {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    // Only escaped characters and `.` / `.*`: always a valid expression.
    Regex::new(&re).expect("escaped LIKE pattern")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators() {
        let a: Attrs = [("cons".to_string(), "ipmi".to_string())]
            .into_iter()
            .collect();
        for (w, want) in [
            ("cons==ipmi", true),
            ("cons!=ipmi", false),
            ("cons=~^ip", true),
            ("cons!~hmc", true),
            ("mgt==", true),
            ("mgt==ipmi", false),
        ] {
            assert_eq!(Where::parse(w).unwrap().matches(&a), want, "{w}");
        }
        assert!(Where::parse("cons").is_err());
        assert!(Where::parse("==x").is_err());
        assert!(Where::parse("a=~(").is_err());
        assert_eq!(Where::parse_list("a==1::b!=2").unwrap().len(), 2);
    }

    #[test]
    fn row_operators() {
        let a: Attrs = [
            ("groups".to_string(), "all,aix".to_string()),
            ("statustime".to_string(), "2011-04-19".to_string()),
        ]
        .into_iter()
        .collect();
        for (w, want) in [
            ("groups=~all%", true),
            ("groups=~aix%", false),
            ("groups=~%a_x", true),
            ("groups!~%aix", false),
            ("groups=~all.%", false),
            ("statustime>2011-04-18", true),
            ("statustime>2011-04-19", false),
            ("statustime>=2011-04-19", true),
            ("statustime<2011-04-20", true),
            ("statustime<2011-04-19", false),
            ("statustime<=2011-04-19", true),
            ("statustime<=2011-04-18", false),
            ("statustime==2011-04-19", true),
            // An unset value is in no comparison, even "less than".
            ("status<zzz", false),
            ("status>=", false),
        ] {
            assert_eq!(Where::parse_row(w).unwrap().matches(&a), want, "{w}");
        }
        assert!(Where::parse_row("groups").is_err());
        assert!(Where::parse_row(">x").is_err());
    }
}
