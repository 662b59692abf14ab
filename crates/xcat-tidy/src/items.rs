//! Removing test-only items from a token stream.
//!
//! An item is test-only when one of its attributes is `#[test]` (or any
//! `#[...::test]`, such as `#[tokio::test]`) or a `#[cfg(...)]` that names
//! `test` or one of the [`TEST_FEATURES`](crate::policy::TEST_FEATURES) and
//! has no `not(...)` in it. An inner `#![cfg(test)]` makes the whole file
//! test-only. A test-only `mod name;` is reported so that the file holding
//! it is treated as test code too.

use crate::lex::{Kind, Token};
use crate::policy::TEST_FEATURES;

/// A file's tokens without its test-only items, and the names of the
/// out-of-line modules (`mod name;`) that were test-only.
#[derive(Debug, Default)]
pub struct Stripped {
    pub tokens: Vec<Token>,
    pub test_modules: Vec<String>,
}

/// Drops every test-only item from `tokens`.
pub fn strip_test_items(tokens: &[Token]) -> Stripped {
    let mut out = Stripped::default();
    let mut i = 0;
    while i < tokens.len() {
        let Some(attr_end) = attribute_end(tokens, i) else {
            out.tokens.push(tokens[i].clone());
            i += 1;
            continue;
        };
        if !is_test_attribute(&tokens[i..attr_end]) {
            out.tokens.extend_from_slice(&tokens[i..attr_end]);
            i = attr_end;
            continue;
        }
        if tokens.get(i + 1).is_some_and(|t| t.is_punct("!")) {
            // `#![cfg(test)]`: the whole file is test code.
            return Stripped::default();
        }
        let item_start = skip_attributes(tokens, attr_end);
        let item_end = item_end(tokens, item_start);
        if let Some(name) = out_of_line_module(&tokens[item_start..item_end]) {
            out.test_modules.push(name);
        }
        i = item_end;
    }
    out
}

/// If an attribute (`#[...]` or `#![...]`) starts at `i`, the index just
/// past its closing bracket.
fn attribute_end(tokens: &[Token], i: usize) -> Option<usize> {
    if !tokens[i].is_punct("#") {
        return None;
    }
    let mut j = i + 1;
    if tokens.get(j).is_some_and(|t| t.is_punct("!")) {
        j += 1;
    }
    if !tokens.get(j).is_some_and(|t| t.is_punct("[")) {
        return None;
    }
    Some(group_end(tokens, j))
}

/// The index just past the group whose opening bracket is at `open`
/// (any of `([{`, nesting counted across all three kinds).
pub fn group_end(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        if t.kind != Kind::Punct {
            continue;
        }
        match t.text.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// Whether the attribute tokens `#[...]` mark a test-only item.
fn is_test_attribute(attr: &[Token]) -> bool {
    let body: Vec<&Token> = attr
        .iter()
        .skip_while(|t| !t.is_punct("["))
        .skip(1)
        .collect();
    let path_end = body
        .iter()
        .position(|t| !(t.kind == Kind::Ident || t.is_punct("::")))
        .unwrap_or(body.len());
    let path = &body[..path_end];
    if path.last().is_some_and(|t| t.is_ident("test")) {
        return true;
    }
    if !(path.len() == 1 && path[0].is_ident("cfg")) {
        return false;
    }
    let args = &body[path_end..];
    let names_test = args.iter().any(|t| {
        t.is_ident("test") || (t.kind == Kind::Str && TEST_FEATURES.contains(&t.text.as_str()))
    });
    names_test && !args.iter().any(|t| t.is_ident("not"))
}

/// Skips any further attributes of the same item.
fn skip_attributes(tokens: &[Token], mut i: usize) -> usize {
    while i < tokens.len() {
        match attribute_end(tokens, i) {
            Some(end) => i = end,
            None => break,
        }
    }
    i
}

/// The end of the item starting at `start`: its first `;` outside any
/// group, or the end of its first `{...}` group (a body), whichever comes
/// first.
fn item_end(tokens: &[Token], start: usize) -> usize {
    let mut j = start;
    while j < tokens.len() {
        let t = &tokens[j];
        if t.is_punct(";") {
            return j + 1;
        }
        if t.is_punct("{") {
            return group_end(tokens, j);
        }
        if t.is_punct("(") || t.is_punct("[") {
            j = group_end(tokens, j);
            continue;
        }
        j += 1;
    }
    tokens.len()
}

/// `[pub[(...)]] mod name;` gives `name`.
fn out_of_line_module(item: &[Token]) -> Option<String> {
    let m = item.iter().position(|t| t.is_ident("mod"))?;
    let name = item.get(m + 1).filter(|t| t.kind == Kind::Ident)?;
    let last = item.last()?;
    (last.is_punct(";") && m + 3 == item.len()).then(|| name.text.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::tokenize;

    fn kept(src: &str) -> Vec<String> {
        strip_test_items(&tokenize(src))
            .tokens
            .into_iter()
            .filter(|t| t.kind == Kind::Ident)
            .map(|t| t.text)
            .collect()
    }

    #[test]
    fn test_modules_and_functions_go() {
        let src = "fn a() {}\n#[cfg(test)]\nmod tests { fn b() { x(); } }\n\
                   #[test] fn c() {}\n#[tokio::test(flavor = \"current_thread\")] async fn d() {}\n\
                   #[cfg(any(test, feature = \"test-support\"))] const E: [u8; 2] = [1, 2];\nfn f() {}";
        assert_eq!(kept(src), ["fn", "a", "fn", "f"]);
    }

    #[test]
    fn other_attributes_and_not_test_stay() {
        let src = "#[cfg(not(test))] fn a() {}\n#[derive(Debug)] struct B;\n#[cfg(unix)] fn c() {}";
        let k = kept(src);
        assert!(k.contains(&"a".to_string()) && k.contains(&"B".to_string()));
        assert!(k.contains(&"c".to_string()));
    }

    #[test]
    fn out_of_line_test_modules_are_named() {
        let src = "#[cfg(feature = \"testbed\")]\npub mod testbed;\n#[cfg(test)]\n#[allow(dead_code)]\nmod tests;\nmod real;";
        let s = strip_test_items(&tokenize(src));
        assert_eq!(s.test_modules, ["testbed", "tests"]);
        assert!(s.tokens.iter().any(|t| t.is_ident("real")));
    }

    #[test]
    fn inner_cfg_test_empties_the_file() {
        let s = strip_test_items(&tokenize("#![cfg(test)]\nfn a() {}"));
        assert!(s.tokens.is_empty());
    }
}
