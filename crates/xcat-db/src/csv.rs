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
    let mut lines = text.split('\n').enumerate().peekable();
    // Header: the first non-blank line, which must start with '#'.
    let header = loop {
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
    let (hline, htext) = header;
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

    let ncols = columns.len();
    let mut records = Vec::new();
    while let Some((idx, first)) = lines.next() {
        let start_line = idx + 1;
        let first = first.strip_suffix('\r').unwrap_or(first);
        if first.trim().is_empty() {
            continue;
        }
        let mut values: Vec<Option<String>> = Vec::with_capacity(ncols);
        let mut cur_line_no = start_line;
        let mut line: Vec<char> = first.chars().collect();
        let mut pos = 0usize;
        loop {
            // At the start of a field.
            if values.len() == ncols {
                let rest: String = line[pos..].iter().collect();
                return Err(CsvError {
                    line: start_line,
                    message: format!("too many fields: {rest}"),
                });
            }
            if pos < line.len() && line[pos] == '"' {
                // Quoted field, possibly spanning lines.
                let mut val = String::new();
                pos += 1;
                loop {
                    if pos >= line.len() {
                        // Continue on the next physical line.
                        match lines.next() {
                            Some((_, next)) => {
                                let next = next.strip_suffix('\r').unwrap_or(next);
                                val.push('\n');
                                line = next.chars().collect();
                                pos = 0;
                                cur_line_no += 1;
                                continue;
                            }
                            None => {
                                return Err(CsvError {
                                    line: start_line,
                                    message: "unmatched \" (quoted value never closed)".into(),
                                })
                            }
                        }
                    }
                    let c = line[pos];
                    if c == '"' {
                        if pos + 1 < line.len() && line[pos + 1] == '"' {
                            val.push('"');
                            pos += 2;
                            continue;
                        }
                        pos += 1;
                        break;
                    }
                    val.push(c);
                    pos += 1;
                }
                values.push(if val.is_empty() { None } else { Some(val) });
                if pos >= line.len() {
                    break;
                }
                if line[pos] != ',' {
                    return Err(CsvError {
                        line: cur_line_no,
                        message: format!(
                            "unescaped \" in value (character {}); double it as \"\"",
                            pos + 1
                        ),
                    });
                }
                pos += 1;
                if pos >= line.len() {
                    // Trailing comma: one more empty field.
                    if values.len() < ncols {
                        values.push(None);
                    }
                    break;
                }
            } else {
                let end = line[pos..]
                    .iter()
                    .position(|&c| c == ',')
                    .map(|e| pos + e)
                    .unwrap_or(line.len());
                let field: String = line[pos..end].iter().collect();
                if field.contains('"') {
                    return Err(CsvError {
                        line: cur_line_no,
                        message: format!(
                            "missing opening \" for a value containing \" (character {})",
                            pos + 1
                        ),
                    });
                }
                let trimmed = field.trim_end();
                values.push(if trimmed.is_empty() {
                    None
                } else {
                    Some(field)
                });
                if end >= line.len() {
                    break;
                }
                pos = end + 1;
                if pos >= line.len() {
                    if values.len() < ncols {
                        values.push(None);
                    } else {
                        return Err(CsvError {
                            line: start_line,
                            message: "too many fields: trailing comma".into(),
                        });
                    }
                    break;
                }
            }
        }
        values.resize(ncols, None);
        records.push(Record {
            line: start_line,
            values,
        });
    }
    Ok((columns, records))
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
