//! Handler plugin (to be written).
#![forbid(unsafe_code)]
