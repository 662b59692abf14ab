//! Object definition templates: the stanza files shipped under
//! `<share_dir>/templates/objects/<type>/` (`switch-template`,
//! `cec-template`, ...), which `lsdef --template` shows and `mkdef
//! --template NAME` starts a new object from. A template value
//! `MANDATORY:text` must be given on the mkdef command line, one
//! `OPTIONAL:text` may be; any other value is the new object's unless the
//! command line gives another. The files are data: nothing here knows a
//! template by name.

use std::path::{Path, PathBuf};

use xcat_db::noderange::natural_cmp;
use xcat_db::objects::{obj_type, ObjType};
use xcat_db::Attrs;
use xcat_plugin::HandlerError;

use super::stanza;

/// One shipped template.
#[derive(Debug, Clone)]
pub struct Template {
    pub t: &'static ObjType,
    pub name: String,
    /// The attributes as the file gives them (quotes taken off).
    pub pairs: Vec<(String, String)>,
}

/// What a template's value asks of `mkdef`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// `MANDATORY:...`: the command line must give it.
    Mandatory,
    /// `OPTIONAL:...`: the command line may give it; no value otherwise.
    Optional,
    /// The new object's value unless the command line gives another.
    Fixed(&'a str),
}

impl Template {
    /// The value of each attribute, for `mkdef`.
    pub fn values(&self) -> impl Iterator<Item = (&str, Value<'_>)> {
        self.pairs.iter().map(|(k, v)| {
            let value = if v.starts_with("MANDATORY:") {
                Value::Mandatory
            } else if v.starts_with("OPTIONAL:") {
                Value::Optional
            } else {
                Value::Fixed(v)
            };
            (k.as_str(), value)
        })
    }

    /// The template's attributes as `lsdef` shows them (text and all).
    pub fn attrs(&self) -> Attrs {
        self.pairs.iter().cloned().collect()
    }

    /// `given` (the command line's attributes) completed from the
    /// template: a mandatory attribute not given is an error, with xCAT's
    /// message; a fixed value fills an attribute not given.
    pub fn apply(&self, given: &Attrs) -> Result<Attrs, String> {
        let mut out = given.clone();
        let is_given = |k: &str| given.get(k).is_some_and(|v| !v.is_empty());
        for (k, v) in self.values() {
            match v {
                Value::Mandatory if !is_given(k) => {
                    return Err(format!("The attribute \"{k}\" must be specified!"));
                }
                Value::Fixed(v) if !v.is_empty() && !is_given(k) => {
                    out.insert(k.to_string(), v.to_string());
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// The directory of the templates of type `t`.
pub fn dir_of(share_dir: &Path, t: &ObjType) -> PathBuf {
    share_dir.join("templates").join("objects").join(t.name)
}

/// Every template of the types `types`, by type then name. A type without
/// a directory has none; a file that is not a stanza file, or a stanza of
/// another type than its directory's, is an error naming the file.
pub fn load(share_dir: &Path, types: &[&'static ObjType]) -> Result<Vec<Template>, HandlerError> {
    let mut out = Vec::new();
    for &t in types {
        let dir = dir_of(share_dir, t);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "stanza") && p.is_file())
            .collect();
        files.sort();
        let mut of_type = Vec::new();
        for f in files {
            let bad = |why: String| {
                HandlerError::Failed(format!(
                    "The template file {} is invalid: {why}",
                    f.display()
                ))
            };
            let text = std::fs::read_to_string(&f).map_err(|e| bad(e.to_string()))?;
            for s in stanza::parse(&text).map_err(bad)? {
                let objtype = s.objtype.as_deref().unwrap_or(t.name);
                if obj_type(objtype).map(|o| o.name) != Some(t.name) {
                    return Err(bad(format!("'{}' is of type '{objtype}'", s.name)));
                }
                of_type.push(Template {
                    t,
                    name: s.name,
                    pairs: s.pairs,
                });
            }
        }
        of_type.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        out.extend(of_type);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xcat_db::objects::TYPES;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../share")
    }

    #[test]
    fn every_shipped_template_attribute_belongs_to_its_type() {
        let all: Vec<&'static ObjType> = TYPES.iter().collect();
        let templates = load(&shipped(), &all).unwrap();
        let names: Vec<&str> = templates.iter().map(|t| t.name.as_str()).collect();
        for want in [
            "cec-template",
            "hmc-template",
            "ppc64le-template",
            "ppc64lekvmguest-template",
            "switch-template",
            "x86_64-template",
            "x86_64kvmguest-template",
        ] {
            assert!(names.contains(&want), "{want} not shipped: {names:?}");
        }
        for tpl in &templates {
            assert!(
                tpl.pairs.iter().any(|(k, _)| k == "groups") || tpl.t.name != "node",
                "{}: a node needs groups",
                tpl.name
            );
            for (k, v) in &tpl.pairs {
                assert!(
                    tpl.t.is_attr(k),
                    "{}: '{k}' is no {} attribute",
                    tpl.name,
                    tpl.t.name
                );
                assert!(!v.starts_with('"'), "{}: {k} keeps its quotes", tpl.name);
            }
            // What a template fixes must pass the object model's conditions
            // (hcp for mgt=hmc, switchtype for nodetype=switch, ...).
            let fixed: Attrs = tpl
                .values()
                .filter_map(|(k, v)| match v {
                    Value::Fixed(v) => Some((k.to_string(), v.to_string())),
                    _ => None,
                })
                .collect();
            let all: Attrs = tpl
                .pairs
                .iter()
                .map(|(k, _)| (k.clone(), "x".to_string()))
                .collect();
            assert_eq!(
                tpl.t.unmet_conditions(&all, &fixed),
                Vec::<String>::new(),
                "{}",
                tpl.name
            );
        }
    }

    #[test]
    fn mandatory_optional_and_fixed_values() {
        let node = obj_type("node").unwrap();
        let tpl = Template {
            t: node,
            name: "t".into(),
            pairs: vec![
                ("groups".into(), "cec,all".into()),
                ("serial".into(), "MANDATORY:the serial".into()),
                ("mac".into(), "OPTIONAL:the mac".into()),
                ("mgt".into(), "hmc".into()),
            ],
        };
        let err = tpl.apply(&Attrs::new()).unwrap_err();
        assert_eq!(err, "The attribute \"serial\" must be specified!");
        let given: Attrs = [("serial", "s1"), ("mgt", "fsp")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let a = tpl.apply(&given).unwrap();
        assert_eq!(a.get("serial").map(String::as_str), Some("s1"));
        assert_eq!(
            a.get("mgt").map(String::as_str),
            Some("fsp"),
            "the command line wins"
        );
        assert_eq!(a.get("groups").map(String::as_str), Some("cec,all"));
        assert!(
            !a.contains_key("mac"),
            "an optional value is no value: {a:?}"
        );
    }

    #[test]
    fn a_missing_directory_has_no_templates_and_a_bad_file_is_named() {
        let dir = std::env::temp_dir().join(format!("tpl-test-{}", std::process::id()));
        let node = obj_type("node").unwrap();
        assert!(load(&dir, &[node]).unwrap().is_empty());
        let d = dir_of(&dir, node);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("bad.stanza"), "net1:\n    objtype=network\n").unwrap();
        let e = load(&dir, &[node]).unwrap_err().to_string();
        assert!(e.contains("bad.stanza"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
