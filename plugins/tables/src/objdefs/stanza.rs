//! xCAT's stanza files (`lsdef -z` writes them, `mkdef -z` and `chdef -z`
//! read them): `name:` opens an object, indented `attr=value` lines follow,
//! `objtype=` names its type, `#` starts a comment.

/// One object of a stanza file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    pub name: String,
    pub objtype: Option<String>,
    pub pairs: Vec<(String, String)>,
}

/// The header line `lsdef -z` starts with.
pub const HEADER: &str = "# <xCAT data object stanza file>";

/// Parse a stanza file; the message names the line that is neither.
pub fn parse(text: &str) -> Result<Vec<Stanza>, String> {
    let mut out: Vec<Stanza> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_suffix(':').filter(|n| !n.contains('=')) {
            out.push(Stanza {
                name: name.trim().to_string(),
                objtype: None,
                pairs: Vec::new(),
            });
            continue;
        }
        let (Some((a, v)), Some(cur)) = (line.split_once('='), out.last_mut()) else {
            return Err(format!(
                "Could not process file input data: line {} is neither 'name:' nor 'attr=value': {line}",
                i + 1
            ));
        };
        // A value may be quoted (`usercomment="a comment"`), as in
        // xCAT's shipped templates: the quotes are not part of it.
        let (a, v) = (a.trim(), unquote(v.trim()));
        if a == "objtype" {
            cur.objtype = Some(v.to_string());
        } else {
            cur.pairs.push((a.to_string(), v.to_string()));
        }
    }
    Ok(out)
}

/// `v` without the double quotes around it (and the blanks inside them).
fn unquote(v: &str) -> &str {
    let v = v.strip_prefix('"').map_or(v, str::trim_start);
    v.strip_suffix('"').map_or(v, str::trim_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_types_and_comments() {
        let s = parse(&format!(
            "{HEADER}\n\ncn1:\n    objtype=node\n    groups=all,compute\n\nnet1:\n    objtype=network\n    net=10.0.0.0\n"
        ))
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "cn1");
        assert_eq!(s[0].objtype.as_deref(), Some("node"));
        assert_eq!(s[0].pairs, vec![("groups".into(), "all,compute".into())]);
        assert_eq!(s[1].pairs, vec![("net".into(), "10.0.0.0".into())]);
        let q = parse("t:\n    usercomment=\"a comment\"\n    ip=\"OPTIONAL:the ip\"\n").unwrap();
        assert_eq!(
            q[0].pairs,
            vec![
                ("usercomment".into(), "a comment".into()),
                ("ip".into(), "OPTIONAL:the ip".into())
            ]
        );
        assert!(parse("groups=all\n").is_err());
        assert!(parse("cn1:\n  junk\n").is_err());
    }
}
