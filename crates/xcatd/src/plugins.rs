//! The one list of handler plugins the daemon serves.
//!
//! Adding a command is a new crate under `plugins/` and one line here (plus
//! its dependency lines): nothing else in the daemon names a plugin. Start-up
//! work a plugin needs goes in its `Handler::at_start`, not in the daemon.

use std::sync::Arc;

use xcat_plugin::Handler;

/// Every plugin's handlers; the test-only commands when asked for.
pub fn plugin_handlers(enable_test_commands: bool) -> Vec<Arc<dyn Handler>> {
    let mut v: Vec<Arc<dyn Handler>> = Vec::new();
    v.extend(plugin_lsxcatd::handlers());
    v.extend(plugin_tables::handlers());
    v.extend(plugin_xdsh::handlers());
    v.extend(plugin_capimage::handlers());
    v.extend(plugin_packimage::handlers());
    v.extend(plugin_geninitrd::handlers());
    v.extend(plugin_nodeset::handlers());
    v.extend(plugin_rmimage::handlers());
    v.extend(plugin_imgverify::handlers());
    v.extend(plugin_statelite::handlers());
    v.extend(plugin_makedhcp::handlers());
    if enable_test_commands {
        v.extend(plugin_testcmds::handlers());
    }
    v
}
