//! XML encoding and decoding of whole documents.
//!
//! Encoding produces the exact line-per-element layout of xCAT's Perl client and
//! daemon (node-side scripts parse replies line by line, so the layout is part of
//! the protocol). Decoding is strict about what could hurt the daemon (DTDs,
//! custom entities, deep nesting, trailing garbage) and lenient about layout.
use std::borrow::Cow;

use quick_xml::escape::EscapeError;
use quick_xml::events::Event;
use quick_xml::Reader;

use crate::types::{Element, Request, Response};

/// Deepest element nesting accepted by [`decode_element`]. Real documents are at
/// most four levels deep; the limit keeps hostile input from building huge stacks.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("DTDs and entity declarations are not accepted")]
    Dtd,
    #[error("expected root element <{expected}>, found <{found}>")]
    WrongRoot {
        expected: &'static str,
        found: String,
    },
}

/// Encode a request as xCAT's Perl client does: one element per line, two-space indent.
pub fn encode_request(req: &Request) -> String {
    encode_element(&req.to_element())
}

/// Encode one response document: one element per line, two-space indent, ASCII only.
pub fn encode_response(resp: &Response) -> String {
    encode_element(&resp.to_element())
}

/// Encode any element tree in the line-per-element layout.
///
/// * each element on its own line, indented two spaces per depth;
/// * a leaf is `<name>text</name>`, an empty leaf `<name></name>`, except
///   `serverdone`, which is written `<serverdone/>`;
/// * a parent is `<name>`, its children, then `</name>` on its own line (text of an
///   element that also has children, which the protocol never uses, follows the
///   opening tag directly);
/// * text is escaped (`& < > "`) and made ASCII: every character outside TAB, LF,
///   CR and 0x20-0x7E becomes one `?` (xCAT's Perl client dies on control
///   characters and mangles UTF-8);
/// * no XML declaration, and a newline after the closing root tag.
pub fn encode_element(e: &Element) -> String {
    let mut out = String::with_capacity(estimate_len(e, 0));
    write_element(&mut out, e, 0);
    out
}

fn estimate_len(e: &Element, depth: usize) -> usize {
    let own = 2 * depth + 2 * e.name.len() + 6 + e.text.len() + 8;
    own + e
        .children
        .iter()
        .map(|c| estimate_len(c, depth + 1))
        .sum::<usize>()
        + if e.children.is_empty() {
            0
        } else {
            2 * depth + 1
        }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn write_element(out: &mut String, e: &Element, depth: usize) {
    indent(out, depth);
    if e.children.is_empty() {
        if e.text.is_empty() && e.name == "serverdone" {
            out.push('<');
            out.push_str(&e.name);
            out.push_str("/>\n");
            return;
        }
        out.push('<');
        out.push_str(&e.name);
        out.push('>');
        escape_text(out, &e.text);
        out.push_str("</");
        out.push_str(&e.name);
        out.push_str(">\n");
    } else {
        out.push('<');
        out.push_str(&e.name);
        out.push('>');
        escape_text(out, &e.text);
        out.push('\n');
        for c in &e.children {
            write_element(out, c, depth + 1);
        }
        indent(out, depth);
        out.push_str("</");
        out.push_str(&e.name);
        out.push_str(">\n");
    }
}

/// Append `text` escaped and reduced to printable ASCII (see [`encode_element`]).
pub fn escape_text(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let mut run_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (replacement, width): (&str, usize) = match b {
            b'&' => ("&amp;", 1),
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'"' => ("&quot;", 1),
            b'\t' | b'\n' | b'\r' | 0x20..=0x7e => {
                i += 1;
                continue;
            }
            // Lead byte of a multi-byte character: one `?` for the whole character.
            0xc0..=0xdf => ("?", 2),
            0xe0..=0xef => ("?", 3),
            0xf0..=0xff => ("?", 4),
            // Control characters and DEL (continuation bytes never start a char).
            _ => ("?", 1),
        };
        // `run_start..i` holds only ASCII bytes and `i` starts a character.
        out.push_str(&text[run_start..i]);
        out.push_str(replacement);
        i = (i + width).min(bytes.len());
        run_start = i;
    }
    out.push_str(&text[run_start..]);
}

/// An element being decoded: its text arrives in segments (text and CDATA
/// events between child elements) that are joined once we know whether it is
/// a leaf or a parent.
struct Open {
    name: String,
    segments: Vec<(String, bool)>,
    children: Vec<Element>,
}

impl Open {
    fn finish(self) -> Element {
        let text = if self.children.is_empty() {
            let has_cdata = self.segments.iter().any(|(_, cdata)| *cdata);
            let mut text = join_segments(self.segments.into_iter().map(|(s, _)| s));
            if !has_cdata && is_pretty_indentation(&text) {
                text.clear();
            }
            text
        } else {
            // Parent: whitespace between children is layout, not content.
            join_segments(self.segments.into_iter().filter_map(|(s, cdata)| {
                if cdata {
                    Some(s)
                } else if s.bytes().all(is_xml_space) {
                    None
                } else {
                    let trimmed = strip_trailing_indentation(&s).len();
                    let mut s = s;
                    s.truncate(trimmed);
                    Some(s)
                }
            }))
        };
        Element {
            name: self.name,
            text,
            children: self.children,
        }
    }
}

fn join_segments(mut it: impl Iterator<Item = String>) -> String {
    let Some(mut first) = it.next() else {
        return String::new();
    };
    for s in it {
        first.push_str(&s);
    }
    first
}

fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// True for text a pretty printer puts between `<x>` and `</x>` when `x` has no
/// content: a line break followed by indentation and nothing else. Leaf text is
/// otherwise kept exactly (an argument may well be a single space or newline).
fn is_pretty_indentation(text: &str) -> bool {
    let b = text.as_bytes();
    if !(b.first() == Some(&b'\n') || b.starts_with(b"\r\n")) || !b.iter().all(|&c| is_xml_space(c))
    {
        return false;
    }
    let last_nl = b.iter().rposition(|&c| c == b'\n').unwrap_or(0);
    let tail = &b[last_nl + 1..];
    !tail.is_empty() && tail.iter().all(|&c| c == b' ' || c == b'\t')
}

/// `s` without a trailing line break plus indentation (the layout before a
/// child element or the closing tag of a parent).
fn strip_trailing_indentation(s: &str) -> &str {
    let t = s.trim_end_matches([' ', '\t']);
    if let Some(t) = t.strip_suffix('\n') {
        t.strip_suffix('\r').unwrap_or(t)
    } else {
        s
    }
}

/// An element name, checked: names are written back verbatim when a request
/// is re-encoded (sub-requests, forwarding), so anything that is not a plain
/// XML name is refused here rather than producing unparsable output later.
fn element_name(raw: &[u8]) -> Result<String, CodecError> {
    let ok = match raw.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_' || *first == b':')
                && rest
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b':' | b'-' | b'.'))
        }
        None => false,
    };
    if ok {
        Ok(String::from_utf8_lossy(raw).into_owned())
    } else {
        Err(CodecError::Malformed(format!(
            "invalid element name {:?}",
            String::from_utf8_lossy(raw)
        )))
    }
}

/// Unescape character data: the five predefined entities and numeric character
/// references are resolved; any other entity reference can only come from a DTD,
/// which we refuse. Invalid UTF-8 is replaced rather than rejected, so a client
/// that sends Latin-1 bytes still gets a reply.
fn unescape_text(raw: &[u8]) -> Result<String, CodecError> {
    let s = String::from_utf8_lossy(raw);
    if !s.contains('&') {
        return Ok(s.into_owned());
    }
    match quick_xml::escape::unescape(&s) {
        Ok(Cow::Borrowed(b)) => Ok(b.to_string()),
        Ok(Cow::Owned(o)) => Ok(o),
        Err(EscapeError::UnrecognizedEntity(..)) => Err(CodecError::Dtd),
        Err(e) => Err(CodecError::Malformed(e.to_string())),
    }
}

fn xml_error(e: quick_xml::Error) -> CodecError {
    match e {
        quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(..)) => CodecError::Dtd,
        other => CodecError::Malformed(other.to_string()),
    }
}

/// Decode a complete document into an element tree (refusing DTDs/entities).
///
/// Attributes are ignored, comments and processing instructions skipped, an XML
/// declaration before the root tolerated. There must be exactly one root element
/// and nothing but whitespace, comments and processing instructions after it.
pub fn decode_element(bytes: &[u8]) -> Result<Element, CodecError> {
    let mut reader = Reader::from_reader(bytes);
    {
        let cfg = reader.config_mut();
        cfg.trim_text(false);
        cfg.check_end_names = true;
        cfg.expand_empty_elements = false;
        cfg.allow_unmatched_ends = false;
    }
    let mut tree = TreeBuilder::default();
    loop {
        match reader.read_event().map_err(xml_error)? {
            Event::Start(s) => tree.open(s.name().as_ref())?,
            Event::Empty(s) => tree.empty(s.name().as_ref())?,
            Event::End(_) => tree.close()?,
            Event::Text(t) => tree.text(&t.into_inner())?,
            Event::CData(c) => tree.cdata(&c.into_inner())?,
            Event::Decl(_) => tree.declaration()?,
            Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) => return Err(CodecError::Dtd),
            Event::Eof => break,
        }
    }
    tree.finish()
}

/// The element tree of a document as its events arrive: the elements still
/// open, and the root once it is closed.
#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Open>,
    root: Option<Element>,
}

impl TreeBuilder {
    fn attach(&mut self, e: Element) {
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(e),
            None => self.root = Some(e),
        }
    }

    /// Whether another element may start here.
    fn check_open(&self) -> Result<(), CodecError> {
        if self.stack.is_empty() && self.root.is_some() {
            return Err(CodecError::Malformed(
                "content after the root element".into(),
            ));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(CodecError::Malformed(format!(
                "elements nested deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn open(&mut self, name: &[u8]) -> Result<(), CodecError> {
        self.check_open()?;
        self.stack.push(Open {
            name: element_name(name)?,
            segments: Vec::new(),
            children: Vec::new(),
        });
        Ok(())
    }

    /// `<name/>`.
    fn empty(&mut self, name: &[u8]) -> Result<(), CodecError> {
        self.check_open()?;
        self.attach(Element {
            name: element_name(name)?,
            ..Default::default()
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), CodecError> {
        let open = self
            .stack
            .pop()
            .ok_or_else(|| CodecError::Malformed("unmatched closing tag".into()))?;
        let e = open.finish();
        self.attach(e);
        Ok(())
    }

    /// Character data: kept inside an element, only whitespace outside.
    fn text(&mut self, raw: &[u8]) -> Result<(), CodecError> {
        match self.stack.last_mut() {
            Some(open) => {
                let text = unescape_text(raw)?;
                open.segments.push((text, false));
            }
            None => {
                if !raw.iter().all(|&b| is_xml_space(b)) {
                    return Err(CodecError::Malformed(if self.root.is_some() {
                        "content after the root element".into()
                    } else {
                        "text before the root element".into()
                    }));
                }
            }
        }
        Ok(())
    }

    fn cdata(&mut self, raw: &[u8]) -> Result<(), CodecError> {
        match self.stack.last_mut() {
            Some(open) => open
                .segments
                .push((String::from_utf8_lossy(raw).into_owned(), true)),
            None => {
                return Err(CodecError::Malformed(
                    "CDATA outside the root element".into(),
                ))
            }
        }
        Ok(())
    }

    /// `<?xml ...?>`, allowed only before the root.
    fn declaration(&self) -> Result<(), CodecError> {
        if self.root.is_some() || !self.stack.is_empty() {
            return Err(CodecError::Malformed(
                "XML declaration after the start of the document".into(),
            ));
        }
        Ok(())
    }

    /// End of input: the root, or why there is none.
    fn finish(self) -> Result<Element, CodecError> {
        if let Some(open) = self.stack.last() {
            return Err(CodecError::Malformed(format!(
                "document ends inside <{}>",
                open.name
            )));
        }
        self.root
            .ok_or_else(|| CodecError::Malformed("no root element".into()))
    }
}

pub fn decode_request(bytes: &[u8]) -> Result<Request, CodecError> {
    let root = decode_element(bytes)?;
    if root.name != "xcatrequest" {
        return Err(CodecError::WrongRoot {
            expected: "xcatrequest",
            found: root.name,
        });
    }
    Ok(Request::from_element(&root))
}

pub fn decode_response(bytes: &[u8]) -> Result<Response, CodecError> {
    let root = decode_element(bytes)?;
    if root.name != "xcatresponse" {
        return Err(CodecError::WrongRoot {
            expected: "xcatresponse",
            found: root.name,
        });
    }
    Ok(Response::from_element(&root))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = String::new();
        escape_text(&mut out, s);
        out
    }

    #[test]
    fn escape_and_ascii() {
        assert_eq!(esc(r#"a&b<c>d"e'f"#), "a&amp;b&lt;c&gt;d&quot;e'f");
        assert_eq!(esc("tab\tlf\ncr\r"), "tab\tlf\ncr\r");
        assert_eq!(esc("\u{0}\u{7}\u{1b}[0m\u{7f}"), "???[0m?");
        // one `?` per character, whatever its UTF-8 length
        assert_eq!(esc("é中😀x"), "???x");
        assert_eq!(esc(""), "");
    }

    #[test]
    fn serverdone_self_closing_other_empty_leaves_not() {
        let e = Element::parent(
            "xcatresponse",
            vec![Element::leaf("data", ""), Element::leaf("serverdone", "")],
        );
        assert_eq!(
            encode_element(&e),
            "<xcatresponse>\n  <data></data>\n  <serverdone/>\n</xcatresponse>\n"
        );
    }

    #[test]
    fn leaf_text_exact_parent_layout_dropped() {
        let e = decode_element(
            b"<r>\n  <a> x </a>\n  <b>\n</b>\n  <c>\n    </c>\n  <p>\n    <q>1</q>\n  </p>\n</r>",
        )
        .unwrap();
        assert_eq!(e.text, "");
        assert_eq!(e.children[0].text, " x ");
        assert_eq!(e.children[1].text, "\n");
        assert_eq!(e.children[2].text, "");
        assert_eq!(e.children[3].text, "");
        assert_eq!(e.children[3].children[0].text, "1");
    }

    #[test]
    fn entities_and_cdata() {
        let e = decode_element(
            b"<r><a>&lt;&amp;&gt;&quot;&apos;&#65;&#x42;</a><b><![CDATA[<&>]]>z</b></r>",
        )
        .unwrap();
        assert_eq!(e.children[0].text, "<&>\"'AB");
        assert_eq!(e.children[1].text, "<&>z");
        // Whitespace in CDATA is content, never layout.
        let e = decode_element(b"<r><a><![CDATA[\n  ]]></a></r>").unwrap();
        assert_eq!(e.children[0].text, "\n  ");
    }

    #[test]
    fn unknown_entity_is_dtd_error() {
        assert!(matches!(
            decode_element(b"<r>&foo;</r>"),
            Err(CodecError::Dtd)
        ));
        assert!(matches!(
            decode_element(b"<!DOCTYPE r [<!ENTITY foo \"x\">]><r>&foo;</r>"),
            Err(CodecError::Dtd)
        ));
    }

    #[test]
    fn structure_errors() {
        for bad in [
            &b"<r><a></r>"[..],
            b"<r></r><r></r>",
            b"<r></r>junk",
            b"junk<r></r>",
            b"<r>",
            b"",
            b"   ",
            b"<r></a>",
            b"<r>&unterminated</r>",
        ] {
            assert!(
                matches!(decode_element(bad), Err(CodecError::Malformed(_))),
                "{:?} -> {:?}",
                String::from_utf8_lossy(bad),
                decode_element(bad)
            );
        }
    }

    #[test]
    fn tolerated_extras() {
        let e = decode_element(
            b"<?xml version=\"1.0\"?>\n<!-- c --><r a=\"1\"><?pi x?><a b='2'>t<!-- c -->u</a><e/></r>\n<!-- after -->\n",
        )
        .unwrap();
        assert_eq!(e.name, "r");
        assert_eq!(e.children[0].text, "tu");
        assert_eq!(e.children[1], Element::leaf("e", ""));
    }

    #[test]
    fn depth_limit() {
        let ok = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(decode_element(ok.as_bytes()).is_ok());
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        assert!(matches!(
            decode_element(deep.as_bytes()),
            Err(CodecError::Malformed(_))
        ));
        let deep_empty = format!(
            "{}<a/>{}",
            "<a>".repeat(MAX_DEPTH),
            "</a>".repeat(MAX_DEPTH)
        );
        assert!(matches!(
            decode_element(deep_empty.as_bytes()),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn invalid_utf8_replaced() {
        let e = decode_element(b"<r><a>caf\xe9</a></r>").unwrap();
        assert_eq!(e.children[0].text, "caf\u{fffd}");
    }
}
