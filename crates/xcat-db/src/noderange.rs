//! Noderange grammar. STUB.
#[derive(Debug, thiserror::Error)]
pub enum NoderangeError {
    #[error("Invalid nodes and/or groups in noderange: {}", .0.join(","))]
    Invalid(Vec<String>),
    #[error("Invalid noderange {0}: {1}")]
    Syntax(String, String),
}
