//! Printing a reply the way xCAT's client does.

use std::io::Write;

use xcatd_proto::{DataText, NodeLine, NodeShown, Response, Shown};

/// Prints responses as they arrive and accumulates the exit status. `out`
/// may be buffered (a response of thousands of lines is then a few writes):
/// it is flushed after every response and before anything goes to `err`,
/// so the two streams keep their order.
pub struct Printer<O: Write, E: Write> {
    out: O,
    err: E,
    code: i32,
    /// A progress line was printed with `\r` and not yet ended.
    progress_open: bool,
}

/// `desc: contents`, or the contents alone when there is no description.
fn data_text(d: DataText<'_>) -> String {
    if d.desc.is_empty() {
        d.contents.to_string()
    } else {
        format!("{}: {}", d.desc, d.contents)
    }
}

impl<O: Write, E: Write> Printer<O, E> {
    pub fn new(out: O, err: E) -> Self {
        Printer {
            out,
            err,
            code: 0,
            progress_open: false,
        }
    }

    pub fn errorcode(&self) -> i32 {
        self.code
    }

    fn end_progress(&mut self) {
        if self.progress_open {
            let _ = writeln!(self.out);
            self.progress_open = false;
        }
    }

    pub fn finish(&mut self) {
        self.end_progress();
        let _ = self.out.flush();
        let _ = self.err.flush();
    }

    pub fn print(&mut self, r: &Response) {
        self.code |= r.errorcode();
        for item in r.shown() {
            match item {
                Shown::Data(d) | Shown::Info(d) => {
                    self.end_progress();
                    let _ = writeln!(self.out, "{}", data_text(d));
                }
                Shown::Progress(text) => {
                    let _ = write!(self.out, "\r{text}\x1b[K");
                    let _ = self.out.flush();
                    self.progress_open = true;
                }
                Shown::Warning(text) => {
                    self.end_progress();
                    let _ = self.out.flush();
                    let _ = writeln!(self.err, "Warning: {text}");
                }
                Shown::Error(text) => {
                    self.end_progress();
                    let _ = self.out.flush();
                    let _ = writeln!(self.err, "Error: {text}");
                }
                Shown::Node(node) => {
                    self.end_progress();
                    self.print_node(&node);
                }
            }
        }
        let _ = self.out.flush();
    }

    /// A per-node record: each line prefixed with the node's name, or the
    /// name alone when the record has no line.
    fn print_node(&mut self, node: &NodeShown<'_>) {
        let name = node.name;
        if node.lines.iter().any(|l| !matches!(l, NodeLine::Data(_))) {
            let _ = self.out.flush();
        }
        for line in &node.lines {
            let _ = match line {
                NodeLine::Data(d) => writeln!(self.out, "{name}: {}", data_text(*d)),
                NodeLine::Warning(text) => writeln!(self.err, "{name}: Warning: {text}"),
                NodeLine::Error(text) => writeln!(self.err, "{name}: Error: {text}"),
            };
        }
        if node.lines.is_empty() {
            let _ = writeln!(self.out, "{name}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xcatd_proto::NodeRecord;

    #[test]
    fn prints_streams_and_ors_errorcodes() {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut p = Printer::new(&mut out, &mut err);
        p.print(&Response::data("hello"));
        p.print(&Response::warning("careful"));
        p.print(&Response::error_code("bad", 2));
        p.print(&Response::node(NodeRecord {
            name: "n1".into(),
            data: vec!["up".into()],
            errorcode: Some(4),
            ..Default::default()
        }));
        p.print(&Response::serverdone());
        assert_eq!(p.errorcode(), 6);
        p.finish();
        assert_eq!(String::from_utf8(out).unwrap(), "hello\nn1: up\n");
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "Warning: careful\nError: bad\n"
        );
    }
}
