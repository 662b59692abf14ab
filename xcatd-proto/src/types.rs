//! Request and response types.
//!
//! Both sides of the protocol are trees of repeatable elements. We keep a generic
//! [`Element`] tree as the source of truth (so unknown elements are never lost) and
//! put typed accessors and builders on top of it.

/// One XML element: a name, its text (concatenated character data) and children.
///
/// Attributes are not part of the xCAT protocol and are dropped by the decoder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// A leaf element with text.
    pub fn leaf(name: impl Into<String>, text: impl Into<String>) -> Self {
        Element {
            name: name.into(),
            text: text.into(),
            children: Vec::new(),
        }
    }

    /// An element with children and no text.
    pub fn parent(name: impl Into<String>, children: Vec<Element>) -> Self {
        Element {
            name: name.into(),
            text: String::new(),
            children,
        }
    }

    /// Texts of all direct children called `name`, in document order.
    pub fn texts<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.children
            .iter()
            .filter(move |c| c.name == name)
            .map(|c| c.text.as_str())
    }

    /// Text of the first direct child called `name`.
    pub fn first_text(&self, name: &str) -> Option<&str> {
        self.children
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.text.as_str())
    }

    /// All direct children called `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// A typed view of one `<xcatrequest>`.
///
/// Fields hold what the daemon and handlers act on; `extra` keeps every element
/// we do not interpret so a sub-request or log can still see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// `<command>`; the first one if several were sent.
    pub command: String,
    /// `<noderange>` text, expanded by the server before dispatch.
    pub noderange: Option<String>,
    /// Explicit `<node>` names, used as given.
    pub nodes: Vec<String>,
    /// One per argv word, in order. A lone empty `<arg></arg>` (sent by
    /// xCAT's no-noderange client when called without arguments) means no args.
    pub args: Vec<String>,
    pub cwd: Option<String>,
    pub stdin: Option<String>,
    /// Children of `<environment>`: `XCAT_*` variables of the client.
    pub environment: Vec<(String, String)>,
    pub clienttype: Option<String>,
    /// Only honoured from a peer whose policy rule is `trusted`.
    pub username: Option<String>,
    /// Echoed back in the final response.
    pub transid: Option<String>,
    /// `<abortcommand>` present with a non-empty, non-`0` value.
    pub abort: bool,
    /// Every other element, in order.
    pub extra: Vec<Element>,
}

impl Request {
    /// A request for `command` with the given args and nothing else.
    pub fn new(command: impl Into<String>, args: Vec<String>) -> Self {
        Request {
            command: command.into(),
            args,
            ..Default::default()
        }
    }

    /// The abort document a client sends on Ctrl-C.
    pub fn abort_document() -> Self {
        Request {
            abort: true,
            ..Default::default()
        }
    }

    /// Build the typed view from a decoded `<xcatrequest>` element.
    pub fn from_element(root: &Element) -> Self {
        let mut req = Request::default();
        let mut command_seen = false;
        for child in &root.children {
            match child.name.as_str() {
                "command" if !command_seen => {
                    req.command = child.text.clone();
                    command_seen = true;
                }
                "noderange" if req.noderange.is_none() => req.noderange = Some(child.text.clone()),
                "node" => req.nodes.push(child.text.clone()),
                "arg" => req.args.push(child.text.clone()),
                "cwd" if req.cwd.is_none() => req.cwd = Some(child.text.clone()),
                "stdin" if req.stdin.is_none() => req.stdin = Some(child.text.clone()),
                "environment" => {
                    for var in &child.children {
                        req.environment.push((var.name.clone(), var.text.clone()));
                    }
                }
                "clienttype" if req.clienttype.is_none() => {
                    req.clienttype = Some(child.text.clone())
                }
                "username" if req.username.is_none() => req.username = Some(child.text.clone()),
                "transid" if req.transid.is_none() => req.transid = Some(child.text.clone()),
                "abortcommand" => {
                    let t = child.text.trim();
                    req.abort = !t.is_empty() && t != "0";
                }
                _ => req.extra.push(child.clone()),
            }
        }
        if req.args.len() == 1 && req.args[0].is_empty() {
            req.args.clear();
        }
        req
    }

    /// The `<xcatrequest>` element tree, in the element order xCAT's Perl client
    /// uses (alphabetical by element name, as its XML::Simple output does).
    pub fn to_element(&self) -> Element {
        let mut children = Vec::new();
        if self.abort {
            children.push(Element::leaf("abortcommand", "1"));
        }
        for a in &self.args {
            children.push(Element::leaf("arg", a.clone()));
        }
        if let Some(v) = &self.clienttype {
            children.push(Element::leaf("clienttype", v.clone()));
        }
        if !self.command.is_empty() {
            children.push(Element::leaf("command", self.command.clone()));
        }
        if let Some(v) = &self.cwd {
            children.push(Element::leaf("cwd", v.clone()));
        }
        if !self.environment.is_empty() {
            children.push(Element::parent(
                "environment",
                self.environment
                    .iter()
                    .map(|(k, v)| Element::leaf(k.clone(), v.clone()))
                    .collect(),
            ));
        }
        for n in &self.nodes {
            children.push(Element::leaf("node", n.clone()));
        }
        if let Some(v) = &self.noderange {
            children.push(Element::leaf("noderange", v.clone()));
        }
        if let Some(v) = &self.stdin {
            children.push(Element::leaf("stdin", v.clone()));
        }
        if let Some(v) = &self.transid {
            children.push(Element::leaf("transid", v.clone()));
        }
        if let Some(v) = &self.username {
            children.push(Element::leaf("username", v.clone()));
        }
        children.extend(self.extra.iter().cloned());
        Element::parent("xcatrequest", children)
    }
}

/// A per-node record inside a response: `<node><name>n1</name>...</node>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeRecord {
    pub name: String,
    pub data: Vec<String>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub errorcode: Option<i32>,
}

/// One `<xcatresponse>` document. Build it with the helpers; read it with the
/// accessors. The element list is kept in order, so unknown keys survive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub items: Vec<Element>,
}

impl Response {
    pub fn new() -> Self {
        Response::default()
    }

    pub fn from_element(root: &Element) -> Self {
        Response {
            items: root.children.clone(),
        }
    }

    pub fn to_element(&self) -> Element {
        Element::parent("xcatresponse", self.items.clone())
    }

    fn with(mut self, e: Element) -> Self {
        self.items.push(e);
        self
    }

    /// A line of output (stdout).
    pub fn data(text: impl Into<String>) -> Self {
        Response::new().with(Element::leaf("data", text))
    }
    /// Structured data: `<data><desc>..</desc><contents>..</contents></data>`.
    pub fn data_desc(desc: impl Into<String>, contents: impl Into<String>) -> Self {
        Response::new().with(Element::parent(
            "data",
            vec![
                Element::leaf("desc", desc),
                Element::leaf("contents", contents),
            ],
        ))
    }
    /// An informational line (stdout).
    pub fn info(text: impl Into<String>) -> Self {
        Response::new().with(Element::leaf("info", text))
    }
    /// A progress line (printed with a carriage return by clients).
    pub fn sinfo(text: impl Into<String>) -> Self {
        Response::new().with(Element::leaf("sinfo", text))
    }
    /// A warning (stderr, `Warning: ` prefix).
    pub fn warning(text: impl Into<String>) -> Self {
        Response::new().with(Element::leaf("warning", text))
    }
    /// An error with errorcode 1: every error must carry an errorcode.
    pub fn error(text: impl Into<String>) -> Self {
        Response::error_code(text, 1)
    }
    /// An error with an explicit errorcode.
    pub fn error_code(text: impl Into<String>, code: i32) -> Self {
        Response::new()
            .with(Element::leaf("error", text))
            .with(Element::leaf("errorcode", code.to_string()))
    }
    /// A per-node record.
    pub fn node(rec: NodeRecord) -> Self {
        let mut children = vec![Element::leaf("name", rec.name)];
        for d in rec.data {
            children.push(Element::leaf("data", d));
        }
        for w in rec.warnings {
            children.push(Element::leaf("warning", w));
        }
        for e in rec.errors {
            children.push(Element::leaf("error", e));
        }
        if let Some(c) = rec.errorcode {
            children.push(Element::leaf("errorcode", c.to_string()));
        }
        Response::new().with(Element::parent("node", children))
    }
    /// The final document of every reply.
    pub fn serverdone() -> Self {
        Response::new().with(Element::leaf("serverdone", ""))
    }
    /// The reply to `authcheck`: who the server takes the client to be.
    /// An unauthenticated client still gets a (empty) `username`, as xCAT's
    /// daemon sends one, so clients can read it unconditionally.
    pub fn authcheck(user: Option<&str>) -> Self {
        let (word, user) = match user {
            Some(u) => ("Authenticated", u),
            None => ("Unauthenticated", ""),
        };
        Response::data(word).with(Element::leaf("username", user))
    }
    /// Echo a request's transaction id (the daemon puts it in the final
    /// document so a client multiplexing requests can match replies).
    pub fn with_transid(self, transid: impl Into<String>) -> Self {
        self.with(Element::leaf("transid", transid))
    }
    /// Name the server that answered, as the first item: xCAT's daemon puts
    /// `xcatdsource` ahead of `serverdone`.
    pub fn with_source(mut self, server: impl Into<String>) -> Self {
        self.items.insert(0, Element::leaf("xcatdsource", server));
        self
    }

    /// Append any element (builder style).
    pub fn push(mut self, e: Element) -> Self {
        self.items.push(e);
        self
    }
    /// Append a top-level `errorcode`.
    pub fn with_errorcode(self, code: i32) -> Self {
        self.with(Element::leaf("errorcode", code.to_string()))
    }

    /// Texts of top-level items called `name`.
    pub fn texts<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.items
            .iter()
            .filter(move |c| c.name == name)
            .map(|c| c.text.as_str())
    }

    /// The echoed transaction id, if any.
    pub fn transid(&self) -> Option<&str> {
        self.texts("transid").next()
    }
    /// The name of the server that answered, if it said.
    pub fn source(&self) -> Option<&str> {
        self.texts("xcatdsource").next()
    }
    /// The user an `authcheck` reply names (empty when unauthenticated).
    pub fn username(&self) -> Option<&str> {
        self.texts("username").next()
    }

    pub fn is_serverdone(&self) -> bool {
        self.items.iter().any(|e| e.name == "serverdone")
    }

    /// OR of every errorcode in this document, top level and inside `node` records.
    pub fn errorcode(&self) -> i32 {
        let mut code = 0;
        for e in &self.items {
            if e.name == "errorcode" {
                code |= e.text.trim().parse::<i32>().unwrap_or(1);
            } else if e.name == "node" {
                for c in e.all("errorcode") {
                    code |= c.text.trim().parse::<i32>().unwrap_or(1);
                }
            }
        }
        code
    }

    /// Per-node records in this document.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.items
            .iter()
            .filter(|e| e.name == "node")
            .map(|n| NodeRecord {
                name: n.first_text("name").unwrap_or_default().to_string(),
                data: n
                    .all("data")
                    .map(|d| {
                        if d.children.is_empty() {
                            d.text.clone()
                        } else {
                            d.first_text("contents").unwrap_or_default().to_string()
                        }
                    })
                    .collect(),
                errors: n.texts("error").map(str::to_string).collect(),
                warnings: n.texts("warning").map(str::to_string).collect(),
                errorcode: n
                    .first_text("errorcode")
                    .and_then(|t| t.trim().parse().ok()),
            })
            .collect()
    }
}
