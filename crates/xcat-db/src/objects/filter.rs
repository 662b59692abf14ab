//! Selection strings: `lsdef -w attr==value` and a dynamic group's
//! `wherevals` (several joined by `::`).

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
}

impl Where {
    /// Parse one test; the message is xCAT's for a malformed one.
    pub fn parse(text: &str) -> Result<Where, String> {
        const BAD: &str = "Incorrect selection string specified with -w flag.";
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
        }
    }
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
}
