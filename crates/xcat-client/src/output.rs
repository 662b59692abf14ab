//! Printing a reply the way xCAT's client does.

use std::io::Write;

use xcatd_proto::{Element, Response};

/// Prints responses as they arrive and accumulates the exit status.
pub struct Printer<O: Write, E: Write> {
    out: O,
    err: E,
    code: i32,
    /// A progress line was printed with `\r` and not yet ended.
    progress_open: bool,
}

fn data_text(e: &Element) -> String {
    if e.children.is_empty() {
        e.text.clone()
    } else {
        let desc = e.first_text("desc").unwrap_or_default();
        let contents = e.first_text("contents").unwrap_or_default();
        if desc.is_empty() {
            contents.to_string()
        } else {
            format!("{desc}: {contents}")
        }
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
        for e in &r.items {
            match e.name.as_str() {
                "data" | "info" => {
                    self.end_progress();
                    let _ = writeln!(self.out, "{}", data_text(e));
                }
                "sinfo" => {
                    let _ = write!(self.out, "\r{}\x1b[K", e.text);
                    let _ = self.out.flush();
                    self.progress_open = true;
                }
                "warning" => {
                    self.end_progress();
                    let _ = writeln!(self.err, "Warning: {}", e.text);
                }
                "error" => {
                    self.end_progress();
                    let _ = writeln!(self.err, "Error: {}", e.text);
                }
                "node" => {
                    self.end_progress();
                    let name = e.first_text("name").unwrap_or_default();
                    let mut printed = false;
                    for c in &e.children {
                        match c.name.as_str() {
                            "data" => {
                                let _ = writeln!(self.out, "{name}: {}", data_text(c));
                                printed = true;
                            }
                            "warning" => {
                                let _ = writeln!(self.err, "{name}: Warning: {}", c.text);
                                printed = true;
                            }
                            "error" => {
                                let _ = writeln!(self.err, "{name}: Error: {}", c.text);
                                printed = true;
                            }
                            _ => {}
                        }
                    }
                    if !printed {
                        let _ = writeln!(self.out, "{name}");
                    }
                }
                _ => {}
            }
        }
        let _ = self.out.flush();
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
