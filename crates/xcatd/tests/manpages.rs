//! The generated man pages: every page renders with `man -l` without a
//! warning, and every option a command's parser defines appears both in its
//! `-h` answer and in its rendered page.

use std::path::Path;
use std::process::Command;

use xcat_plugin::args::OptionSpec;

/// The page as `man -l` renders it, wide enough that no line is broken.
fn render(page: &Path) -> String {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANWIDTH", "250")
        .env("MAN_KEEP_FORMATTING", "")
        .output()
        .expect("man (man-db: scripts/setup-machine installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "man -l {}: {stderr}",
        page.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `spelling` as a word of `text`: `-p` is not found in `-pack`.
fn mentions(text: &str, spelling: &str) -> bool {
    text.match_indices(spelling).any(|(i, _)| {
        let next = text[i + spelling.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

fn missing(text: &str, options: &[OptionSpec]) -> Vec<String> {
    options
        .iter()
        .flat_map(OptionSpec::spellings)
        .filter(|s| !mentions(text, s))
        .collect()
}

/// Options the usage text of these commands does not show yet, each named:
/// statelite's usage texts follow xCAT's own (which leave out `-h` and `-v`)
/// and are being reworked together with that plugin. Any other gap fails.
const NOT_YET_IN_USAGE: &[(&str, &str)] = &[
    ("ilitefile", "-h"),
    ("ilitefile", "--help"),
    ("ilitefile", "-v"),
    ("ilitefile", "--version"),
    ("litefile", "-h"),
    ("litefile", "--help"),
    ("litefile", "-v"),
    ("litefile", "--version"),
    ("litetree", "-h"),
    ("litetree", "--help"),
    ("litetree", "-v"),
    ("litetree", "--version"),
    ("lslite", "-v"),
    ("lslite", "--version"),
];

#[test]
fn every_option_is_in_the_usage_and_the_page_and_every_page_renders() {
    let dir = tempfile::tempdir().unwrap();
    let cli = clap::Command::new("xcatd").arg(clap::Arg::new("config").long("config"));
    let pages = xcatd::manpages::write_all(dir.path(), &cli).unwrap();
    let helps = xcatd::manpages::command_helps().unwrap();
    let served = xcatd::served_commands(&xcatd::plugin_handlers(false));
    assert_eq!(helps.len(), served.len());
    assert!(
        helps
            .iter()
            .any(|h| h.name == "capimage" && h.options.len() > 5),
        "capimage's definition was not collected: {helps:?}"
    );
    let mut bad = Vec::new();
    for h in &helps {
        let usage = h.usage.join("\n");
        assert!(
            usage.contains("Usage:"),
            "{}: -h answered {usage:?}",
            h.name
        );
        let page = render(&dir.path().join(format!("man1/{}.1", h.name)));
        for m in missing(&usage, &h.options) {
            if NOT_YET_IN_USAGE.contains(&(h.name, m.as_str())) {
                continue;
            }
            bad.push(format!("{}: {m} is not in -h", h.name));
        }
        for m in missing(&page, &h.options) {
            bad.push(format!("{}: {m} is not in the man page", h.name));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    for p in &pages {
        render(p);
    }
    assert!(render(&dir.path().join("man5/xcatd.toml.5")).contains("max_connections"));
    assert!(mentions(
        &render(&dir.path().join("man8/xcatd.8")),
        "--config"
    ));
}

#[test]
fn a_missing_option_is_found() {
    let o = OptionSpec {
        short: Some('p'),
        long: Some("profile".into()),
        value: Some("PROFILE".into()),
    };
    assert_eq!(
        missing("Usage: x [-p|--pack]", std::slice::from_ref(&o)),
        vec!["--profile"]
    );
    assert!(missing("Usage: x [-p|--profile PROFILE]", &[o]).is_empty());
}
