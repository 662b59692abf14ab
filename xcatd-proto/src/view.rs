//! What a client shows of a response, typed: the client prints from these
//! and never reads element names itself.

use crate::types::{Element, Response};

/// The text of a `data` or `info` item: plain (`desc` empty, the text in
/// `contents`) or structured (`<desc>` and `<contents>` children, each empty
/// when missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataText<'a> {
    pub desc: &'a str,
    pub contents: &'a str,
}

impl<'a> DataText<'a> {
    fn of(e: &'a Element) -> DataText<'a> {
        if e.children.is_empty() {
            DataText {
                desc: "",
                contents: &e.text,
            }
        } else {
            DataText {
                desc: e.first_text("desc").unwrap_or_default(),
                contents: e.first_text("contents").unwrap_or_default(),
            }
        }
    }
}

/// One item of a response a client shows, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown<'a> {
    /// `<data>`: a line of output.
    Data(DataText<'a>),
    /// `<info>`: an informational line (shown like data).
    Info(DataText<'a>),
    /// `<sinfo>`: a progress line that the next one replaces.
    Progress(&'a str),
    Warning(&'a str),
    Error(&'a str),
    /// `<node>`: a per-node record.
    Node(NodeShown<'a>),
}

/// A per-node record as shown: its name and its lines in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeShown<'a> {
    /// `<name>`, empty when missing.
    pub name: &'a str,
    pub lines: Vec<NodeLine<'a>>,
}

/// One line of a per-node record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeLine<'a> {
    Data(DataText<'a>),
    Warning(&'a str),
    Error(&'a str),
}

impl Response {
    /// The items a client shows, in order; everything else (errorcodes,
    /// `serverdone`, unknown elements) is left out.
    pub fn shown(&self) -> impl Iterator<Item = Shown<'_>> + '_ {
        self.items.iter().filter_map(|e| {
            Some(match e.name.as_str() {
                "data" => Shown::Data(DataText::of(e)),
                "info" => Shown::Info(DataText::of(e)),
                "sinfo" => Shown::Progress(&e.text),
                "warning" => Shown::Warning(&e.text),
                "error" => Shown::Error(&e.text),
                "node" => Shown::Node(NodeShown::of(e)),
                _ => return None,
            })
        })
    }
}

impl<'a> NodeShown<'a> {
    fn of(e: &'a Element) -> NodeShown<'a> {
        let lines = e
            .children
            .iter()
            .filter_map(|c| match c.name.as_str() {
                "data" => Some(NodeLine::Data(DataText::of(c))),
                "warning" => Some(NodeLine::Warning(&c.text)),
                "error" => Some(NodeLine::Error(&c.text)),
                _ => None,
            })
            .collect();
        NodeShown {
            name: e.first_text("name").unwrap_or_default(),
            lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeRecord;

    #[test]
    fn shown_items_in_order_without_codes_or_unknowns() {
        let mut r = Response::data("a")
            .push(Element::leaf("unknown", "x"))
            .push(Element::leaf("sinfo", "50%"))
            .with_errorcode(3);
        r.items.extend(Response::data_desc("d", "c").items);
        r.items.extend(Response::info("i").items);
        let shown: Vec<_> = r.shown().collect();
        let plain = |s| DataText {
            desc: "",
            contents: s,
        };
        assert_eq!(
            shown,
            [
                Shown::Data(plain("a")),
                Shown::Progress("50%"),
                Shown::Data(DataText {
                    desc: "d",
                    contents: "c"
                }),
                Shown::Info(plain("i")),
            ]
        );
    }

    #[test]
    fn node_records_keep_their_line_order() {
        let r = Response::node(NodeRecord {
            name: "n1".into(),
            data: vec!["up".into()],
            warnings: vec!["slow".into()],
            errors: vec!["bad".into()],
            errorcode: Some(1),
        });
        let Some(Shown::Node(n)) = r.shown().next() else {
            panic!("no node in {r:?}")
        };
        assert_eq!(n.name, "n1");
        assert_eq!(
            n.lines,
            [
                NodeLine::Data(DataText {
                    desc: "",
                    contents: "up"
                }),
                NodeLine::Warning("slow"),
                NodeLine::Error("bad"),
            ]
        );
    }
}
