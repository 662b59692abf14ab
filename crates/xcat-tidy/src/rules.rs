//! Rules 2 to 6: what may appear in which source file.

use crate::lex::{Kind, Token};
use crate::policy::{covers, DB_CRATE, MAX_FN_LINES, PROTO_CRATE};
use crate::tree::{strip_toml_comment, SourceFile};
use crate::{Rule, Violation};

/// The protocol's document elements: text that opens or closes one of them
/// is hand-written protocol XML.
const PROTOCOL_ROOTS: &[&str] = &["xcatrequest", "xcatresponse", "serverdone"];

/// Every finding in one source file, before any allowance is applied.
pub fn check_source(file: &SourceFile, out: &mut Vec<Violation>) {
    let path = file.path.as_str();
    let mut add = |rule, line, message: String| out.push(Violation::new(rule, path, line, message));
    if !covers(DB_CRATE, path) {
        for t in file.tokens.iter().filter(|t| t.is_ident("sqlx")) {
            add(Rule::Sqlx, t.line, SQLX_MESSAGE.to_string());
        }
    }
    if !covers(PROTO_CRATE, path) {
        for (line, what) in element_constructions(&file.tokens) {
            add(
                Rule::Xml,
                line,
                format!("`{what}` outside xcatd-proto: {XML_ADVICE}"),
            );
        }
        for (line, what) in named_reads(file.production.as_deref().unwrap_or(&[])) {
            add(
                Rule::Xml,
                line,
                format!("element read by name `{what}` in production code: {XML_READ_ADVICE}"),
            );
        }
        for (line, what) in protocol_text(file.production.as_deref().unwrap_or(&[])) {
            add(
                Rule::Xml,
                line,
                format!("protocol XML text `{what}` in production code: {XML_ADVICE}"),
            );
        }
    }
    for t in file.tokens.iter().filter(|t| t.is_ident("unsafe")) {
        add(Rule::Unsafe, t.line, UNSAFE_MESSAGE.to_string());
    }
    for (line, what) in spawns(file.production.as_deref().unwrap_or(&[])) {
        add(
            Rule::Spawn,
            line,
            format!("`{what}` in production code: {SPAWN_ADVICE}"),
        );
    }
    for f in long_functions(file.production.as_deref().unwrap_or(&[]), MAX_FN_LINES) {
        add(
            Rule::FnLength,
            f.line,
            format!(
                "fn `{}` is {} lines long (limit {MAX_FN_LINES}): split it into named steps",
                f.name, f.lines
            ),
        );
    }
}

const SQLX_MESSAGE: &str =
    "`sqlx` outside crates/xcat-db: SQL lives in xcat-db only; give xcat-db the function you need";
const XML_ADVICE: &str =
    "only xcatd-proto writes protocol XML; use its typed constructors (Response, Request)";
const XML_READ_ADVICE: &str =
    "only xcatd-proto knows element names; read through its typed views (Response::shown, nodes)";
const UNSAFE_MESSAGE: &str =
    "`unsafe` outside the syscall shims listed in UNSAFE_ALLOWED (crates/xcat-tidy/src/policy.rs)";
const SPAWN_ADVICE: &str =
    "run local tools through the tool runner (xcat_image::tool, xcat_jobkit::tool), remote commands through xcat-remote";

/// `sqlx` on a non-comment line of a `Cargo.toml` outside xcat-db; the root
/// manifest's `[workspace.dependencies]` may pin its version.
pub fn check_manifest(path: &str, text: &str, out: &mut Vec<Violation>) {
    if covers(DB_CRATE, path) {
        return;
    }
    let mut pinning = false;
    for (n, raw) in text.lines().enumerate() {
        let line = strip_toml_comment(raw);
        let t = line.trim();
        if t.starts_with('[') {
            pinning = path == "Cargo.toml"
                && t.trim_start_matches('[')
                    .starts_with("workspace.dependencies");
            continue;
        }
        if !pinning && has_word(line, "sqlx") {
            out.push(Violation::new(
                Rule::Sqlx,
                path,
                n + 1,
                SQLX_MESSAGE.to_string(),
            ));
        }
    }
}

/// Whether `word` occurs in `line` not as part of a longer identifier
/// (`sqlx-core` counts: it is sqlx).
fn has_word(line: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(word).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// `Element::new` and struct literals `Element { ... }`. A `{` after
/// `Element` is not a construction when the path follows `->`, `for`,
/// `impl`, `struct`, `enum`, `union` or `trait` (a return type, an impl or
/// a definition).
fn element_constructions(tokens: &[Token]) -> Vec<(usize, &'static str)> {
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if !t.is_ident("Element") {
            continue;
        }
        let next = tokens.get(i + 1);
        if next.is_some_and(|n| n.is_punct("::"))
            && tokens.get(i + 2).is_some_and(|n| n.is_ident("new"))
        {
            out.push((t.line, "Element::new"));
        } else if next.is_some_and(|n| n.is_punct("{")) && !after_declaring_word(tokens, i) {
            out.push((t.line, "Element {"));
        }
    }
    out
}

/// Whether the path ending at `i` is preceded by a word that makes a
/// following `{` a body or a definition rather than a struct literal.
fn after_declaring_word(tokens: &[Token], i: usize) -> bool {
    let mut start = i;
    while start >= 2 && tokens[start - 1].is_punct("::") && tokens[start - 2].kind == Kind::Ident {
        start -= 2;
    }
    let Some(prev) = start.checked_sub(1).map(|p| &tokens[p]) else {
        return false;
    };
    prev.is_punct("->")
        || ["for", "impl", "struct", "enum", "union", "trait"]
            .iter()
            .any(|w| prev.is_ident(w))
}

/// The element tree's readers that take an element name.
const NAMED_READERS: &[&str] = &["texts", "first_text", "all"];

/// Calls of the element tree's readers with a literal name, `.texts("data")`:
/// code that knows element names. (`Iterator::all` takes a closure, never a
/// string, so it does not match.)
fn named_reads(tokens: &[Token]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let at = |k: usize| tokens.get(i + k);
        if t.is_punct(".")
            && at(1).is_some_and(|m| NAMED_READERS.iter().any(|r| m.is_ident(r)))
            && at(2).is_some_and(|p| p.is_punct("("))
            && at(3).is_some_and(|s| s.kind == Kind::Str)
        {
            let (m, s) = (&tokens[i + 1], &tokens[i + 3]);
            out.push((t.line, format!("{}(\"{}\")", m.text, s.text)));
        }
    }
    out
}

/// String literals that open or close a protocol document element.
fn protocol_text(tokens: &[Token]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for t in tokens.iter().filter(|t| t.kind == Kind::Str) {
        for root in PROTOCOL_ROOTS {
            for tag in [format!("<{root}"), format!("</{root}")] {
                if t.text.contains(&tag) {
                    out.push((t.line, tag));
                }
            }
        }
    }
    out
}

/// `Command::new` (whatever path leads to it) and any path through
/// `process::Command`, including `process::{.., Command, ..}` imports, so
/// an alias cannot hide a spawn.
fn spawns(tokens: &[Token]) -> Vec<(usize, &'static str)> {
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let at = |k: usize| tokens.get(i + k);
        if t.is_ident("Command")
            && at(1).is_some_and(|n| n.is_punct("::"))
            && at(2).is_some_and(|n| n.is_ident("new"))
        {
            out.push((t.line, "Command::new"));
        }
        if !(t.is_ident("process") && at(1).is_some_and(|n| n.is_punct("::"))) {
            continue;
        }
        match at(2) {
            Some(n) if n.is_ident("Command") => out.push((t.line, "process::Command")),
            Some(n) if n.is_punct("{") => {
                let end = crate::items::group_end(tokens, i + 2);
                if tokens[i + 2..end].iter().any(|x| x.is_ident("Command")) {
                    out.push((t.line, "process::Command"));
                }
            }
            _ => {}
        }
    }
    out
}

/// A function whose body runs past the limit.
#[derive(Debug, PartialEq, Eq)]
struct LongFn {
    name: String,
    /// The line of its `fn` keyword.
    line: usize,
    /// From the `fn` line to the closing brace, both counted.
    lines: usize,
}

/// Every `fn name ... { ... }` in `tokens` longer than `limit` lines,
/// nested functions included. Declarations without a body (trait methods,
/// `extern` items) and `fn(..)` pointer types have nothing to measure.
fn long_functions(tokens: &[Token], limit: usize) -> Vec<LongFn> {
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let Some(name) = tokens.get(i + 1).filter(|n| n.kind == Kind::Ident) else {
            continue;
        };
        if !t.is_ident("fn") {
            continue;
        }
        let Some(open) = body_start(tokens, i + 2) else {
            continue;
        };
        let close = crate::items::group_end(tokens, open) - 1;
        let lines = tokens[close].line - t.line + 1;
        if lines > limit {
            out.push(LongFn {
                name: name.text.clone(),
                line: t.line,
                lines,
            });
        }
    }
    out
}

/// The index of the `{` opening a function body whose signature continues
/// at `from`; `None` when a `;` ends the signature first. Parameter lists
/// and array types are skipped whole, so a `{` or `;` inside them (a
/// const-generic block, `[u8; 4]`) is not taken for the body or the end.
fn body_start(tokens: &[Token], from: usize) -> Option<usize> {
    let mut j = from;
    while let Some(t) = tokens.get(j) {
        if t.is_punct("{") {
            return Some(j);
        }
        if t.is_punct(";") {
            return None;
        }
        j = if t.is_punct("(") || t.is_punct("[") {
            crate::items::group_end(tokens, j)
        } else {
            j + 1
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::tokenize;

    #[test]
    fn element_bodies_and_definitions_are_not_constructions() {
        let src = "impl Element { fn a() -> Element { x } fn b() -> proto::Element { y } }\n\
                   impl From<u8> for Element { }\nstruct Element { n: u8 }";
        assert!(element_constructions(&tokenize(src)).is_empty());
        let built = "let e = Element { name };\nlet f = xcatd_proto::Element::new(\"data\");";
        assert_eq!(
            element_constructions(&tokenize(built)),
            [(1, "Element {"), (2, "Element::new")]
        );
    }

    #[test]
    fn spawn_paths_in_every_spelling() {
        let src = "use std::process::{Child, Command as C};\nlet c = tokio::process::Command::new(\"x\");\n\
                   use std::os::unix::process::CommandExt;\nlet o = Command::new(p);";
        let lines: Vec<_> = spawns(&tokenize(src)).into_iter().map(|(l, _)| l).collect();
        assert_eq!(lines, [1, 2, 2, 4]);
    }

    /// A function `name` whose body has `inner` lines between the braces.
    fn function(name: &str, inner: usize) -> String {
        let body: String = (0..inner)
            .map(|k| format!("    let _x{k} = \"}}\";\n"))
            .collect();
        format!("fn {name}(a: [u8; 2]) -> Result<(), E> {{\n{body}}}\n")
    }

    #[test]
    fn long_functions_are_measured_from_fn_to_the_closing_brace() {
        // 99 lines inside: 101 with the signature and the closing brace.
        let src = format!(
            "// a comment\n{}{}",
            function("long", 99),
            function("short", 98)
        );
        let found = long_functions(&tokenize(&src), 100);
        let want = LongFn {
            name: "long".into(),
            line: 2,
            lines: 101,
        };
        assert_eq!(found, [want]);
    }

    #[test]
    fn bodiless_and_pointer_fns_are_not_measured() {
        let src = "trait T { fn a(&self);\n fn b(&self) -> u8; }\ntype F = fn(u8) -> u8;\n\
                   extern \"C\" { fn c(x: i32); }\nfn d() {\n\n}\n";
        assert!(long_functions(&tokenize(src), 3).is_empty());
        let d = long_functions(&tokenize(src), 2);
        assert_eq!(
            d.iter()
                .map(|f| (f.name.as_str(), f.line, f.lines))
                .collect::<Vec<_>>(),
            [("d", 5, 3)]
        );
    }

    #[test]
    fn element_reads_by_literal_name() {
        let src = "let d = e.first_text(\"desc\");\nfor x in r.texts(\"data\") {}\n\
                   let ok = v.iter().all(|x| x > 0);\nlet n = e.first_text(name);\nn.all(\"node\");";
        let found: Vec<_> = named_reads(&tokenize(src))
            .into_iter()
            .map(|(l, w)| format!("{l} {w}"))
            .collect();
        assert_eq!(
            found,
            [
                "1 first_text(\"desc\")",
                "2 texts(\"data\")",
                "5 all(\"node\")"
            ]
        );
    }

    #[test]
    fn manifest_words() {
        assert!(has_word("sqlx.workspace = true", "sqlx"));
        assert!(has_word("sqlx-core = \"0.8\"", "sqlx"));
        assert!(!has_word("nosqlx = 1", "sqlx"));
        assert!(!has_word("sqlx_like = 1", "sqlx"));
    }
}
