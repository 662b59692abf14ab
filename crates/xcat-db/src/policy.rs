//! Policy rows and xCAT's matching rules. STUB.

/// One active row of the `policy` table.
#[derive(Debug, Clone, Default)]
pub struct PolicyRow {
    pub priority: String,
    pub name: Option<String>,
    pub host: Option<String>,
    pub commands: Option<String>,
    pub noderange: Option<String>,
    pub parameters: Option<String>,
    pub time: Option<String>,
    pub rule: Option<String>,
}

/// What a request looks like to the policy engine.
#[derive(Debug, Clone, Default)]
pub struct PolicyQuery {
    /// Certificate CN; None when the peer sent no certificate.
    pub user: Option<String>,
    /// The client's short hostname (or address text when it has no name).
    pub host: Option<String>,
    pub command: String,
    pub args: Vec<String>,
    /// Nodes the request targets (already expanded).
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyDecision {
    /// Allowed by the row with this priority; `trusted` when its rule is `trusted`.
    Allow { priority: String, trusted: bool },
    /// Denied by the row with this priority (rule not allow/accept/trusted).
    Deny { priority: String },
    /// No row matched.
    NoMatch,
}
