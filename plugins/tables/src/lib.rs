//! Handlers for the table admin commands, so nobody edits SQL by hand:
//! `tabdump`, `tabrestore`, `chtab`, `nodels` and `lsdef` (osimages).
//!
//! Of these only `nodels` takes a noderange (it arrives expanded in
//! [`xcat_plugin::HandlerRequest::nodes`]); the others read everything from
//! their arguments, and `tabrestore` reads the CSV from the request's `stdin`
//! (the client sends the file's contents there).
#![forbid(unsafe_code)]

use std::sync::Arc;

use xcat_plugin::Handler;

mod chtab;
mod lsdef;
mod nodels;
mod tabdump;
mod tabrestore;

pub use chtab::Chtab;
pub use lsdef::Lsdef;
pub use nodels::Nodels;
pub use tabdump::Tabdump;
pub use tabrestore::Tabrestore;

/// Every handler of this plugin.
pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![
        Arc::new(Tabdump),
        Arc::new(Tabrestore),
        Arc::new(Chtab),
        Arc::new(Nodels),
        Arc::new(Lsdef),
    ]
}
