//! Man pages, generated from what the daemon itself knows so they never
//! drift from it: a command's page from its `-h` answer and its clap
//! definition (collected while it answers, `xcat_plugin::args::
//! collect_definitions`), the daemon's from its own command line, the
//! configuration's from the commented `config/xcatd.toml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use xcat_plugin::args::OptionSpec;
use xcat_plugin::{Identity, Responder};
use xcatd_proto::view::Shown;
use xcatd_proto::Request;

use crate::config::Config;

/// The commented default configuration, the text of xcatd.toml(5).
const CONFIG_TEXT: &str = include_str!("../../../config/xcatd.toml");

/// The commands the daemon answers itself take no options and answer no
/// `-h`: their synopsis is written here.
const BUILTIN_SYNOPSIS: &[(&str, &str)] = &[
    (
        "authcheck",
        "Usage: authcheck\nSays which user the server takes this client for (the certificate's CN).",
    ),
    (
        "noderange",
        "Usage: noderange <noderange>\nLists the nodes a noderange names, one a line.",
    ),
];

/// What one command says for `-h`, and the options its parser defines.
#[derive(Debug, Clone)]
pub struct CommandHelp {
    pub name: &'static str,
    /// The `-h` answer, one line each.
    pub usage: Vec<String>,
    pub options: Vec<OptionSpec>,
}

/// Ask every served command for `-h` in-process, as root, against a
/// throwaway database, collecting its clap definition meanwhile.
pub fn command_helps() -> anyhow::Result<Vec<CommandHelp>> {
    let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    let (helps, defs) =
        xcat_plugin::args::collect_definitions(|| rt.block_on(ask_every_command(dir.path())));
    let mut helps = helps?;
    for h in &mut helps {
        if let Some((_, options)) = defs.iter().find(|(name, _)| *name == h.name) {
            h.options = options.clone();
        }
    }
    Ok(helps)
}

async fn ask_every_command(dir: &Path) -> anyhow::Result<Vec<CommandHelp>> {
    let cfg = Config {
        state_dir: dir.to_path_buf(),
        install_dir: dir.join("install"),
        tftp_dir: dir.join("tftpboot"),
        share_dir: dir.join("share"),
        ..Config::default()
    };
    let db = crate::open_db(&cfg).await?;
    crate::seed(&db, &cfg).await?;
    let handlers = crate::plugin_handlers(false);
    let names = crate::served_commands(&handlers);
    let registry = crate::Registry::new(handlers, db, Arc::new(crate::settings_of(&cfg)))?;
    let mut helps = Vec::new();
    for name in names {
        let usage = match BUILTIN_SYNOPSIS.iter().find(|(b, _)| *b == name) {
            Some((_, text)) => text.lines().map(str::to_string).collect(),
            None => ask_help(&registry, name).await,
        };
        helps.push(CommandHelp {
            name,
            usage,
            options: Vec::new(),
        });
    }
    Ok(helps)
}

/// The lines a client would print for `NAME -h`.
async fn ask_help(registry: &crate::Registry, name: &str) -> Vec<String> {
    let (out, mut rx) = Responder::channel(1024);
    let req = Request::new(name, vec!["-h".to_string()]);
    let root = Identity {
        user: Some("root".into()),
        peer: "127.0.0.1:0".into(),
        host: Some("localhost".into()),
    };
    registry
        .serve(req, root, tokio_util::sync::CancellationToken::new(), out)
        .await;
    let mut lines = Vec::new();
    while let Some(resp) = rx.recv().await {
        for item in resp.shown() {
            match item {
                Shown::Data(t) | Shown::Info(t) => lines.push(t.contents.to_string()),
                Shown::Error(e) | Shown::Warning(e) => lines.push(e.to_string()),
                _ => {}
            }
        }
    }
    lines
}

/// Text for roff: backslashes and dashes escaped, no line taken for a
/// request (a leading `.` or `'`).
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

fn header(name: &str, section: u8, manual: &str) -> String {
    format!(
        ".TH \"{}\" {section} \"\" \"xcatd-rs {}\" \"{manual}\"\n",
        name.to_uppercase(),
        xcat_plugin::args::VERSION
    )
}

/// Lines shown as they are (no filling), as the usage text is laid out.
fn verbatim<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    let mut s = String::from(".nf\n");
    for l in lines {
        s.push_str(&roff(l));
        s.push('\n');
    }
    s.push_str(".fi\n");
    s
}

/// NAME(1): the usage text, then each option of the definition.
pub fn command_page(h: &CommandHelp) -> String {
    let mut s = header(h.name, 1, "xCAT commands");
    s.push_str(&format!(
        ".SH NAME\n{} \\- an xCAT command, answered by xcatd\n",
        roff(h.name)
    ));
    s.push_str(".SH SYNOPSIS\n");
    s.push_str(&verbatim(h.usage.iter().map(String::as_str)));
    if !h.options.is_empty() {
        s.push_str(".SH OPTIONS\n");
        for o in &h.options {
            let mut item = format!(".TP\n.B {}", roff(&o.spellings().join(", ")));
            if let Some(v) = &o.value {
                item.push_str(&format!(" \\fI{}\\fR", roff(v)));
            }
            s.push_str(&item);
            s.push_str("\nSee the synopsis.\n");
        }
    }
    s.push_str(&format!(
        ".SH DESCRIPTION\n{} is a link to \\fBxcatclient\\fR (see \\fBxcatclient \\-h\\fR), which sends the command line to \
         xcatd(8) (XCATHOST, default localhost:3001) and prints the reply; the exit \
         status is the OR of the reply's error codes.\n",
        roff(h.name)
    ));
    s.push_str(".SH SEE ALSO\nxcatd(8), xcatd.toml(5)\n");
    s
}

/// xcatd(8) from the daemon's own command line.
pub fn daemon_page(cli: &clap::Command) -> String {
    let mut s = header("xcatd", 8, "System administration");
    s.push_str(".SH NAME\nxcatd \\- xCAT\\-compatible management daemon\n");
    s.push_str(
        ".SH SYNOPSIS\n.B xcatd\n[\\-\\-config \\fIFILE\\fR] [\\-\\-log\\-format text|json] \
         [\\-\\-log\\-file \\fIFILE\\fR] [\\fICOMMAND\\fR]\n",
    );
    s.push_str(".SH OPTIONS\n");
    s.push_str(&arguments(cli));
    s.push_str(".SH COMMANDS\n");
    for sub in cli.get_subcommands() {
        s.push_str(&format!(".SS {}\n", roff(sub.get_name())));
        if let Some(about) = sub.get_about() {
            s.push_str(&format!("{}\n", roff(&about.to_string())));
        }
        s.push_str(&arguments(sub));
    }
    s.push_str(
        ".SH SIGNALS\nSIGTERM, SIGINT: stop accepting, let running commands finish for \
         shutdown_grace, then cancel them.\n.PP\nSIGHUP: open the log file again (after rotation), \
         apply log_level from the configuration, restart a supervised dnsmasq.\n",
    );
    s.push_str(
        ".SH FILES\n/etc/xcatd/xcatd.toml, /etc/xcat/cert/, /var/lib/xcatd/\n\
         .SH SEE ALSO\nxcatd.toml(5)\n",
    );
    s
}

/// One `.TP` item per option of `cmd`, with its help text.
fn arguments(cmd: &clap::Command) -> String {
    let mut s = String::new();
    for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let spellings: Vec<String> = a
            .get_short()
            .map(|c| format!("-{c}"))
            .into_iter()
            .chain(a.get_long().map(|l| format!("--{l}")))
            .collect();
        if spellings.is_empty() {
            continue;
        }
        s.push_str(&format!(".TP\n.B {}\n", roff(&spellings.join(", "))));
        if let Some(help) = a.get_help() {
            s.push_str(&format!("{}\n", roff(&help.to_string())));
        }
    }
    s
}

/// xcatd.toml(5): the commented default configuration.
pub fn config_page() -> String {
    let mut s = header("xcatd.toml", 5, "File formats");
    s.push_str(".SH NAME\nxcatd.toml \\- xcatd's configuration\n");
    s.push_str(
        ".SH DESCRIPTION\nTOML; every key is optional, unknown keys are refused. \
         The file as shipped, with every key at its default:\n",
    );
    s.push_str(&verbatim(CONFIG_TEXT.lines()));
    s.push_str(".SH SEE ALSO\nxcatd(8)\n");
    s
}

/// Write every page under `dir` (`man1/`, `man5/`, `man8/`); the paths written.
pub fn write_all(dir: &Path, cli: &clap::Command) -> anyhow::Result<Vec<PathBuf>> {
    let mut pages = vec![
        ("man8/xcatd.8".to_string(), daemon_page(cli)),
        ("man5/xcatd.toml.5".to_string(), config_page()),
    ];
    for h in command_helps()? {
        pages.push((format!("man1/{}.1", h.name), command_page(&h)));
    }
    let mut written = Vec::new();
    for (rel, text) in pages {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
