//! End-to-end tests against a real `xcatd` over real TLS.
mod daemon;
mod capimage;
