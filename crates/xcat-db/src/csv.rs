//! xCAT's table CSV format (what `tabdump` prints and `tabrestore` reads).
//!
//! Output: a header `#col1,col2,...`, then one line per row; a set value is
//! written as `"value"` with every `"` doubled, an unset (NULL or empty) value
//! as nothing at all. Input accepts the same, plus quoted values that span
//! lines (xCAT allows newlines inside quotes).

use std::fmt::Write as _;

/// Format one row as a CSV line (without the trailing newline).
pub fn format_row(values: &[Option<String>]) -> String {
    let mut line = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            line.push('"');
            line.push_str(&v.replace('"', "\"\""));
            line.push('"');
        }
    }
    line
}

/// Format a whole table: header plus rows, each line ending in `\n`.
pub fn format_table(columns: &[&str], rows: &[Vec<Option<String>>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "#{}", columns.join(","));
    for r in rows {
        out.push_str(&format_row(r));
        out.push('\n');
    }
    out
}

/// A CSV problem, with the 1-based line number where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CsvError {
    pub line: usize,
    pub message: String,
}

/// One data record: the line it starts on and one value per header column
/// (None for an empty field or a field missing at the end of the line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub line: usize,
    pub values: Vec<Option<String>>,
}

/// Parse a CSV document: returns the header column names and the records.
/// Column names are returned as written; the caller checks them.
pub fn parse(text: &str) -> Result<(Vec<String>, Vec<Record>), CsvError> {
    let mut lines = text.split('\n').enumerate();
    let columns = header(&mut lines)?;
    let mut records = Vec::new();
    while let Some((idx, first)) = lines.next() {
        let first = first.strip_suffix('\r').unwrap_or(first);
        if first.trim().is_empty() {
            continue;
        }
        records.push(record(&mut lines, idx + 1, first, columns.len())?);
    }
    Ok((columns, records))
}

/// The document's physical lines, numbered from 0.
type Lines<'a> = std::iter::Enumerate<std::str::Split<'a, char>>;

/// The header: the first non-blank line, which must start with '#'.
fn header(lines: &mut Lines<'_>) -> Result<Vec<String>, CsvError> {
    let (hline, htext) = loop {
        match lines.next() {
            None => {
                return Err(CsvError {
                    line: 1,
                    message: "empty input: missing header line starting with #".into(),
                })
            }
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((i, l)) => break (i + 1, l),
        }
    };
    let htext = htext.trim_end();
    let Some(rest) = htext.strip_prefix('#') else {
        return Err(CsvError {
            line: hline,
            message: "data missing header line starting with #".into(),
        });
    };
    // Like xCAT, tolerate quotes around header names added by spreadsheet tools.
    let columns: Vec<String> = rest
        .replace('"', "")
        .split(',')
        .map(|c| c.trim().to_string())
        .collect();
    if columns.iter().any(|c| c.is_empty()) {
        return Err(CsvError {
            line: hline,
            message: "empty column name in header".into(),
        });
    }
    Ok(columns)
}

/// One record starting with the physical line `first` (number `start_line`);
/// a quoted value may take more lines from `lines`.
fn record(
    lines: &mut Lines<'_>,
    start_line: usize,
    first: &str,
    ncols: usize,
) -> Result<Record, CsvError> {
    let mut c = Cursor {
        lines,
        start_line,
        line_no: start_line,
        line: first.chars().collect(),
        pos: 0,
        values: Vec::with_capacity(ncols),
        ncols,
    };
    loop {
        // At the start of a field.
        if c.values.len() == ncols {
            let rest: String = c.line[c.pos..].iter().collect();
            return Err(CsvError {
                line: start_line,
                message: format!("too many fields: {rest}"),
            });
        }
        let more = if c.pos < c.line.len() && c.line[c.pos] == '"' {
            c.quoted_field()?
        } else {
            c.plain_field()?
        };
        if !more {
            break;
        }
    }
    let mut values = c.values;
    values.resize(ncols, None);
    Ok(Record {
        line: start_line,
        values,
    })
}

/// Where the reading of one record stands.
struct Cursor<'l, 'a> {
    lines: &'l mut Lines<'a>,
    start_line: usize,
    /// The number of the physical line being read.
    line_no: usize,
    line: Vec<char>,
    pos: usize,
    values: Vec<Option<String>>,
    ncols: usize,
}

impl Cursor<'_, '_> {
    fn error(&self, line: usize, message: String) -> CsvError {
        CsvError { line, message }
    }

    /// A quoted field at `pos`; false when it ended the record.
    fn quoted_field(&mut self) -> Result<bool, CsvError> {
        let val = self.quoted_value()?;
        self.values
            .push(if val.is_empty() { None } else { Some(val) });
        if self.pos >= self.line.len() {
            return Ok(false);
        }
        if self.line[self.pos] != ',' {
            let message = format!(
                "unescaped \" in value (character {}); double it as \"\"",
                self.pos + 1
            );
            return Err(self.error(self.line_no, message));
        }
        self.pos += 1;
        if self.pos >= self.line.len() {
            // Trailing comma: one more empty field.
            if self.values.len() < self.ncols {
                self.values.push(None);
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// The value of the quoted field at `pos` (its opening quote), possibly
    /// spanning lines; leaves `pos` just past the closing quote.
    fn quoted_value(&mut self) -> Result<String, CsvError> {
        let mut val = String::new();
        self.pos += 1;
        loop {
            if self.pos >= self.line.len() {
                // Continue on the next physical line.
                let Some((_, next)) = self.lines.next() else {
                    let message = "unmatched \" (quoted value never closed)".into();
                    return Err(self.error(self.start_line, message));
                };
                let next = next.strip_suffix('\r').unwrap_or(next);
                val.push('\n');
                self.line = next.chars().collect();
                self.pos = 0;
                self.line_no += 1;
                continue;
            }
            let c = self.line[self.pos];
            if c == '"' {
                if self.pos + 1 < self.line.len() && self.line[self.pos + 1] == '"' {
                    val.push('"');
                    self.pos += 2;
                    continue;
                }
                self.pos += 1;
                return Ok(val);
            }
            val.push(c);
            self.pos += 1;
        }
    }

    /// An unquoted field at `pos`; false when it ended the record.
    fn plain_field(&mut self) -> Result<bool, CsvError> {
        let (line, pos) = (&self.line, self.pos);
        let end = line[pos..]
            .iter()
            .position(|&c| c == ',')
            .map(|e| pos + e)
            .unwrap_or(line.len());
        let field: String = line[pos..end].iter().collect();
        if field.contains('"') {
            let message = format!(
                "missing opening \" for a value containing \" (character {})",
                pos + 1
            );
            return Err(self.error(self.line_no, message));
        }
        let trimmed = field.trim_end();
        self.values.push(if trimmed.is_empty() {
            None
        } else {
            Some(field)
        });
        if end >= self.line.len() {
            return Ok(false);
        }
        self.pos = end + 1;
        if self.pos >= self.line.len() {
            if self.values.len() < self.ncols {
                self.values.push(None);
            } else {
                let message = "too many fields: trailing comma".into();
                return Err(self.error(self.start_line, message));
            }
            return Ok(false);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn formats_like_tabdump() {
        let rows = vec![
            vec![s("n1"), None, s("a,b"), s("say \"hi\""), s("")],
            vec![None, None, None, None, None],
        ];
        let out = format_table(&["a", "b", "c", "d", "e"], &rows);
        assert_eq!(
            out,
            "#a,b,c,d,e\n\"n1\",,\"a,b\",\"say \"\"hi\"\"\",\n,,,,\n"
        );
    }

    #[test]
    fn parses_what_it_formats() {
        let rows = vec![
            vec![s("n1"), None, s("a,b"), s("say \"hi\"")],
            vec![None, s("x\ny"), None, s("\"")],
        ];
        let out = format_table(&["a", "b", "c", "d"], &rows);
        let (cols, recs) = parse(&out).unwrap();
        assert_eq!(cols, vec!["a", "b", "c", "d"]);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].values, rows[0]);
        assert_eq!(recs[1].values, rows[1]);
        assert_eq!(recs[0].line, 2);
        assert_eq!(recs[1].line, 3);
    }

    #[test]
    fn unquoted_values_and_short_lines() {
        let (_, recs) = parse("#a,b,c\nx,y\n\n\"z\"\n").unwrap();
        assert_eq!(recs[0].values, vec![s("x"), s("y"), None]);
        assert_eq!(recs[1].values, vec![s("z"), None, None]);
        assert_eq!(recs[1].line, 4);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("#a,b\n\"x\",\"y\"\n\"x\",\"y\",\"z\"\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("too many fields"), "{e}");
        let e = parse("#a,b\nok,ok\nx\"y,z\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse("#a,b\n\"x\"y,z\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("line 2: unescaped"), "{e}");
        let e = parse("#a,b\n\n\"never closed,\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse("a,b\n").unwrap_err();
        assert_eq!(e.line, 1);
    }
}
