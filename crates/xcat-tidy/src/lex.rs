//! A small Rust lexer: just enough to tell code from comments and literals.
//!
//! The rules look for identifiers (`unsafe`, `sqlx`, `Command`) and for text
//! inside string literals; a plain text search would trip over doc comments
//! that explain a rule and over messages that quote a keyword. Comments are
//! dropped, string literals keep their raw text (escapes unprocessed, which
//! is enough for a substring search), everything else is an identifier or a
//! punctuation token. Numbers come out as identifier-like words: no rule
//! looks at them.

/// What a token is; only the distinctions the rules need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An identifier or keyword (`r#name` keeps its prefix, so a raw
    /// identifier never reads as the keyword), or a number.
    Ident,
    /// One punctuation character, or `::` / `->` as one token.
    Punct,
    /// The contents of a string, byte string or raw string literal.
    Str,
    /// A character or byte literal.
    Char,
    /// A lifetime or loop label, `'a`.
    Lifetime,
}

/// One token and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub text: String,
    pub line: usize,
}

impl Token {
    /// True for an identifier spelled `name`.
    pub fn is_ident(&self, name: &str) -> bool {
        self.kind == Kind::Ident && self.text == name
    }

    /// True for a punctuation token spelled `p`.
    pub fn is_punct(&self, p: &str) -> bool {
        self.kind == Kind::Punct && self.text == p
    }
}

/// Splits Rust source into tokens, dropping comments and whitespace.
/// Malformed input (an unterminated literal) ends the token stream there
/// rather than failing: the compiler is the judge of syntax, not this.
pub fn tokenize(src: &str) -> Vec<Token> {
    let mut lx = Lexer {
        chars: src.chars().collect(),
        pos: 0,
        line: 1,
        out: Vec::new(),
    };
    while lx.pos < lx.chars.len() {
        lx.step();
    }
    lx.out
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    out: Vec<Token>,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    /// Moves past one character, counting lines.
    fn bump(&mut self) {
        if self.peek(0) == Some('\n') {
            self.line += 1;
        }
        self.pos += 1;
    }

    fn push(&mut self, kind: Kind, text: String, line: usize) {
        self.out.push(Token { kind, text, line });
    }

    /// Consumes one token (or one run of whitespace, or one comment).
    fn step(&mut self) {
        let c = self.chars[self.pos];
        match (c, self.peek(1)) {
            (c, _) if c.is_whitespace() => self.bump(),
            ('/', Some('/')) => self.line_comment(),
            ('/', Some('*')) => self.block_comment(),
            ('"', _) => self.string(0),
            ('\'', _) => self.quote(),
            (c, _) if is_ident_start(c) => self.word(),
            (c, _) if c.is_ascii_digit() => self.number(),
            _ => self.punct(),
        }
    }

    fn line_comment(&mut self) {
        while self.peek(0).is_some_and(|c| c != '\n') {
            self.pos += 1;
        }
    }

    /// Block comments nest in Rust, so depth is counted.
    fn block_comment(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.peek(0) {
            match (c, self.peek(1)) {
                ('/', Some('*')) => {
                    depth += 1;
                    self.pos += 2;
                }
                ('*', Some('/')) => {
                    depth -= 1;
                    self.pos += 2;
                    if depth == 0 {
                        return;
                    }
                }
                _ => self.bump(),
            }
        }
    }

    /// A string literal starting `skip` characters ahead of the opening
    /// quote's prefix (`b"`, `c"`): backslash escapes hide the next character.
    fn string(&mut self, skip: usize) {
        let line = self.line;
        self.pos += skip + 1;
        let start = self.pos;
        while let Some(c) = self.peek(0) {
            match c {
                '\\' => {
                    self.bump();
                    self.bump();
                }
                '"' => break,
                _ => self.bump(),
            }
        }
        let text: String = self.chars[start..self.pos.min(self.chars.len())]
            .iter()
            .collect();
        self.pos += 1;
        self.push(Kind::Str, text, line);
    }

    /// A raw string: `skip` prefix characters (`r`, `br`, `cr`), then
    /// `hashes` `#`s, a quote, and the body up to a quote with as many `#`s.
    fn raw_string(&mut self, skip: usize, hashes: usize) {
        let line = self.line;
        self.pos += skip + hashes + 1;
        let start = self.pos;
        while self.pos < self.chars.len() {
            if self.chars[self.pos] == '"' && self.closes_raw(hashes) {
                let text = self.chars[start..self.pos].iter().collect();
                self.pos += 1 + hashes;
                self.push(Kind::Str, text, line);
                return;
            }
            self.bump();
        }
    }

    fn closes_raw(&self, hashes: usize) -> bool {
        (1..=hashes).all(|i| self.peek(i) == Some('#'))
    }

    /// `'` starts a character literal or a lifetime: `'x'` and `'\n'` are
    /// characters, `'a` followed by anything but a quote is a lifetime.
    fn quote(&mut self) {
        let line = self.line;
        let is_char = self.peek(1) == Some('\\') || self.peek(2) == Some('\'');
        if !is_char {
            self.pos += 1;
            let start = self.pos;
            while self.peek(0).is_some_and(is_ident_char) {
                self.pos += 1;
            }
            let text = self.chars[start..self.pos].iter().collect();
            self.push(Kind::Lifetime, text, line);
            return;
        }
        self.char_literal(1);
    }

    /// A character literal whose opening quote is `skip - 1` characters
    /// ahead (after a `b` prefix for byte literals).
    fn char_literal(&mut self, skip: usize) {
        let line = self.line;
        self.pos += skip;
        let start = self.pos;
        if self.peek(0) == Some('\\') {
            self.pos += 2;
        } else {
            self.pos += 1;
        }
        while self.peek(0).is_some_and(|c| c != '\'' && c != '\n') {
            self.pos += 1;
        }
        let end = self.pos.min(self.chars.len());
        let text = self.chars[start..end].iter().collect();
        self.pos += 1;
        self.push(Kind::Char, text, line);
    }

    /// An identifier, or a literal with a letter prefix (`b"`, `r#"`, `br"`,
    /// `c"`, `b'`), or a raw identifier `r#name`.
    fn word(&mut self) {
        if self.prefixed_literal() {
            return;
        }
        let line = self.line;
        let start = self.pos;
        if self.peek(0) == Some('r') && self.peek(1) == Some('#') {
            self.pos += 2;
        }
        while self.peek(0).is_some_and(is_ident_char) {
            self.pos += 1;
        }
        let text = self.chars[start..self.pos].iter().collect();
        self.push(Kind::Ident, text, line);
    }

    /// Lexes a literal introduced by a letter prefix; false if there is none.
    fn prefixed_literal(&mut self) -> bool {
        let prefix_len = match (self.peek(0), self.peek(1)) {
            (Some('b' | 'c'), Some('r')) => 2,
            (Some('b' | 'c' | 'r'), _) => 1,
            _ => return false,
        };
        let raw = self.peek(prefix_len - 1) == Some('r');
        let mut hashes = 0;
        while raw && self.peek(prefix_len + hashes) == Some('#') {
            hashes += 1;
        }
        match self.peek(prefix_len + hashes) {
            Some('"') if raw => self.raw_string(prefix_len, hashes),
            Some('"') if prefix_len == 1 => self.string(1),
            Some('\'') if prefix_len == 1 && self.peek(0) == Some('b') => self.char_literal(2),
            _ => return false,
        }
        true
    }

    /// Digits and the letters and underscores of suffixes and radixes; a
    /// decimal point is left as punctuation, harmless for every rule.
    fn number(&mut self) {
        let line = self.line;
        let start = self.pos;
        while self.peek(0).is_some_and(is_ident_char) {
            self.pos += 1;
        }
        let text = self.chars[start..self.pos].iter().collect();
        self.push(Kind::Ident, text, line);
    }

    /// `::` and `->` are single tokens: the rules match paths and return
    /// types; every other punctuation character stands alone.
    fn punct(&mut self) {
        let line = self.line;
        let pair: String = self.chars[self.pos..(self.pos + 2).min(self.chars.len())]
            .iter()
            .collect();
        if pair == "::" || pair == "->" {
            self.pos += 2;
            self.push(Kind::Punct, pair, line);
            return;
        }
        let c = self.chars[self.pos];
        self.bump();
        self.push(Kind::Punct, c.to_string(), line);
    }
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idents(src: &str) -> Vec<String> {
        tokenize(src)
            .into_iter()
            .filter(|t| t.kind == Kind::Ident)
            .map(|t| t.text)
            .collect()
    }

    fn strings(src: &str) -> Vec<String> {
        tokenize(src)
            .into_iter()
            .filter(|t| t.kind == Kind::Str)
            .map(|t| t.text)
            .collect()
    }

    #[test]
    fn comments_are_dropped() {
        let src = "a // unsafe\n/* outer /* nested unsafe */ still */ b\n/// doc unsafe\nc";
        assert_eq!(idents(src), ["a", "b", "c"]);
    }

    #[test]
    fn strings_hide_their_words_but_keep_text() {
        let src =
            r####"x("unsafe \" sqlx"); y(r#"a "quoted" unsafe"#); z(b"<b>"); w(br##"#"##)"####;
        assert_eq!(idents(src), ["x", "y", "z", "w"]);
        assert_eq!(
            strings(src),
            [r#"unsafe \" sqlx"#, r#"a "quoted" unsafe"#, "<b>", "#"]
        );
    }

    #[test]
    fn lifetimes_and_chars_are_told_apart() {
        let toks =
            tokenize("fn f<'a>(x: &'a str) { let q = '\"'; let e = '\\''; let b = b'x'; g(x) }");
        let kinds: Vec<_> = toks
            .iter()
            .filter(|t| matches!(t.kind, Kind::Char | Kind::Lifetime))
            .map(|t| (t.kind, t.text.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (Kind::Lifetime, "a"),
                (Kind::Lifetime, "a"),
                (Kind::Char, "\""),
                (Kind::Char, "\\'"),
                (Kind::Char, "x"),
            ]
        );
        assert!(toks.iter().any(|t| t.is_ident("g")));
    }

    #[test]
    fn lines_count_through_multiline_literals_and_comments() {
        let toks = tokenize("a\n\"x\ny\"\n/*\n\n*/ b\nr#\"\n\"# c");
        let lines: Vec<_> = toks.iter().map(|t| (t.text.as_str(), t.line)).collect();
        assert_eq!(
            lines,
            [("a", 1), ("x\ny", 2), ("b", 6), ("\n", 7), ("c", 8)]
        );
    }

    #[test]
    fn paths_and_raw_identifiers() {
        let toks = tokenize("std::process::Command::new(r#unsafe) -> unsafe_code");
        let texts: Vec<_> = toks.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "std",
                "::",
                "process",
                "::",
                "Command",
                "::",
                "new",
                "(",
                "r#unsafe",
                ")",
                "->",
                "unsafe_code"
            ]
        );
    }
}
