//! Handlers for the table admin commands, so nobody edits SQL by hand:
//! `tabdump`, `tabrestore`, `chtab`, `nodels`, and the object commands
//! `mkdef`, `chdef`, `rmdef`, `lsdef` and `noderm` over the object model of
//! [`xcat_db::objects`], `nodech` and `nodeadd` (node attributes by table
//! column), and `gettab`, `tabgrep`, `tabprune`; `tabch` is chtab's other name.
//!
//! Of these only `nodels` takes a noderange (it arrives expanded in
//! [`xcat_plugin::HandlerRequest::nodes`]); the others read everything from
//! their arguments, and `tabrestore` reads the CSV from the request's `stdin`
//! (the client sends the file's contents there).
#![forbid(unsafe_code)]

use std::sync::Arc;

use xcat_plugin::Handler;

mod chtab;
mod nodech;
mod nodels;
mod objdefs;
mod tabdump;
mod tabrestore;
mod tabtools;

pub use chtab::Chtab;
pub use nodech::{Nodeadd, Nodech};
pub use nodels::Nodels;
pub use objdefs::chdef::Chdef;
pub use objdefs::lsdef::Lsdef;
pub use objdefs::mkdef::Mkdef;
pub use objdefs::rmdef::{Noderm, Rmdef};
pub use tabdump::Tabdump;
pub use tabrestore::Tabrestore;
pub use tabtools::{Gettab, Tabgrep, Tabprune};

/// Every handler of this plugin.
pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![
        Arc::new(Tabdump),
        Arc::new(Tabrestore),
        Arc::new(Chtab),
        Arc::new(Nodels),
        Arc::new(Lsdef),
        Arc::new(Mkdef),
        Arc::new(Chdef),
        Arc::new(Rmdef),
        Arc::new(Noderm),
        Arc::new(Nodech),
        Arc::new(Nodeadd),
        Arc::new(Gettab),
        Arc::new(Tabgrep),
        Arc::new(Tabprune),
    ]
}
