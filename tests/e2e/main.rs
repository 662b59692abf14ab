//! End-to-end tests against a real `xcatd` over real TLS.
mod daemon;
mod capimage;
mod capimage_faults;
mod capimage_options;
mod tables;
mod xdsh;
