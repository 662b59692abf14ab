//! One way to read a request's argument list, for every command.
//!
//! A command declares its options as a `clap` derive struct (only its own
//! options) and a [`Syntax`] (its name and hand-written usage text, kept in
//! xCAT's style). [`Syntax::parse`] adds the two flags every command shares
//! and turns clap's errors into [`HandlerError::Usage`]: one short message in
//! the project's words, then the usage text.
//!
//! The shared flags follow xCAT's commands (`tabutils.pm`, `imgcapture.pm`):
//! `-h`, `--help` (and `-?`, which xCAT's table commands accept) answer the
//! usage text, and `-v`, `--version` one line `NAME Version VERSION (xcatd-rs)`, both
//! as `data` responses with errorcode 0: asking for help is not an error.
//! Either flag is answered as soon as the parser reaches it, whatever
//! follows; an error earlier on the line is reported instead (xCAT's
//! `GetOptions` handlers report any bad option before looking at `-h`).
//!
//! Parsing is strict: an unknown option or a word the command does not take
//! is an error, never ignored. A repeated option keeps its last value.

use std::cell::RefCell;
use std::fmt::Display;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, Command, Parser};

use crate::{ClientGone, HandlerError, Responder};

/// The version every command reports (the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// `-h`: answer the usage text.
    Help,
    /// `-v`: answer the version line.
    Version,
    /// Run the command with these options.
    Run(T),
}

impl<T> Parsed<T> {
    /// Check or convert the options of a run; help and version pass through.
    pub fn and_then<U>(
        self,
        f: impl FnOnce(T) -> Result<U, HandlerError>,
    ) -> Result<Parsed<U>, HandlerError> {
        Ok(match self {
            Parsed::Help => Parsed::Help,
            Parsed::Version => Parsed::Version,
            Parsed::Run(t) => Parsed::Run(f(t)?),
        })
    }
}

/// Which flag asks for the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionFlag {
    /// `-v` and `--version`: xCAT's usual spelling.
    Lower,
    /// `-V` and `--version`: xdsh's, whose `-v` means "verify" in xCAT.
    Upper,
    /// None added: the command's own options already say `-v` (lsxcatd,
    /// whose `-v` is one item of its report and combines with the others).
    Own,
}

/// A command's name and usage: everything the shared flags and the error
/// messages need.
#[derive(Debug, Clone, Copy)]
pub struct Syntax {
    pub name: &'static str,
    /// Shown for `-h` (one `data` response per line) and after every usage error.
    pub usage: &'static str,
    pub version: VersionFlag,
}

impl Syntax {
    /// A command with xCAT's usual `-h` and `-v`.
    pub const fn new(name: &'static str, usage: &'static str) -> Syntax {
        Syntax {
            name,
            usage,
            version: VersionFlag::Lower,
        }
    }

    /// The same command with another version flag.
    pub const fn version_flag(self, version: VersionFlag) -> Syntax {
        Syntax { version, ..self }
    }

    /// Parse `args` (a request's arguments, without the command name) into `T`.
    /// A lone empty argument, what xCAT's Perl client sends for a command
    /// given no arguments, means none.
    pub fn parse<T: Parser>(&self, args: &[String]) -> Result<Parsed<T>, HandlerError> {
        let args = match args {
            [only] if only.is_empty() => &[],
            a => a,
        };
        let mut cmd = self.command(T::command());
        record_definition(self.name, &cmd);
        let argv = std::iter::once(self.name).chain(args.iter().map(String::as_str));
        // Parsing in place leaves `cmd` built, as `describe` needs it.
        let matches = match cmd.try_get_matches_from_mut(argv) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::DisplayHelp => return Ok(Parsed::Help),
            Err(e) if e.kind() == ErrorKind::DisplayVersion => return Ok(Parsed::Version),
            Err(e) => return Err(self.error(describe(&cmd, args, &e))),
        };
        T::from_arg_matches(&matches)
            .map(Parsed::Run)
            .map_err(|e| self.error(describe(&cmd, args, &e)))
    }

    /// Answer help or version on `out`; the options of a run are handed back.
    pub async fn answer<T>(
        &self,
        parsed: Parsed<T>,
        out: &Responder,
    ) -> Result<Option<T>, ClientGone> {
        match parsed {
            Parsed::Help => {
                for line in self.usage.lines() {
                    out.data(line).await?;
                }
                Ok(None)
            }
            Parsed::Version => {
                out.data(self.version_line()).await?;
                Ok(None)
            }
            Parsed::Run(t) => Ok(Some(t)),
        }
    }

    /// [`parse`](Self::parse) then [`answer`](Self::answer): `None` when the
    /// request was answered (help or version) and nothing is left to run.
    pub async fn read<T: Parser>(
        &self,
        args: &[String],
        out: &Responder,
    ) -> Result<Option<T>, HandlerError> {
        let parsed = self.parse(args)?;
        Ok(self.answer(parsed, out).await?)
    }

    /// The `-v` answer.
    pub fn version_line(&self) -> String {
        format!("{} Version {VERSION} (xcatd-rs)", self.name)
    }

    /// A usage error: the message, then the usage text.
    pub fn error(&self, msg: impl Display) -> HandlerError {
        HandlerError::Usage(format!("{msg}\n{}", self.usage))
    }

    /// The command's own options plus the shared flags. clap's own help and
    /// version flags are replaced, since their answers are clap's text.
    fn command(&self, cmd: Command) -> Command {
        let help = Arg::new("shared-help")
            .short('h')
            .long("help")
            .short_alias('?')
            .action(ArgAction::Help);
        let cmd = cmd
            .name(self.name)
            .version(VERSION)
            .disable_help_flag(true)
            .disable_version_flag(true)
            .args_override_self(true)
            .arg(help);
        let version = Arg::new("shared-version")
            .long("version")
            .action(ArgAction::Version);
        match self.version {
            VersionFlag::Lower => cmd.arg(version.short('v')),
            VersionFlag::Upper => cmd.arg(version.short('V')),
            VersionFlag::Own => cmd,
        }
    }
}

/// One option of a command's clap definition: its spellings, as the man
/// pages list them and the test that compares them with `-h` reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionSpec {
    pub short: Option<char>,
    pub long: Option<String>,
    /// The value's name (`PROFILE`), for an option that takes one.
    pub value: Option<String>,
}

impl OptionSpec {
    /// `-p`, `--profile` or `-p, --profile`.
    pub fn spellings(&self) -> Vec<String> {
        let short = self.short.map(|c| format!("-{c}"));
        let long = self.long.as_ref().map(|l| format!("--{l}"));
        short.into_iter().chain(long).collect()
    }
}

/// The definitions [`collect_definitions`] gathers: command name, options.
pub type Definitions = Vec<(&'static str, Vec<OptionSpec>)>;

thread_local! {
    /// Set only while [`collect_definitions`] runs: a daemon serving
    /// requests never records anything.
    static COLLECTED: RefCell<Option<Definitions>> = const { RefCell::new(None) };
}

/// Run `f` and return, beside its result, the option definitions of every
/// command line parsed on this thread meanwhile. The definitions stay
/// private to each plugin; asking a command for `-h` through this shows
/// them, which is how the man pages are generated from the definitions
/// themselves (a current-thread runtime keeps the handlers on this thread).
pub fn collect_definitions<R>(f: impl FnOnce() -> R) -> (R, Definitions) {
    COLLECTED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let r = f();
    let defs = COLLECTED
        .with(|c| c.borrow_mut().take())
        .unwrap_or_default();
    (r, defs)
}

fn record_definition(name: &'static str, cmd: &Command) {
    COLLECTED.with(|c| {
        if let Some(defs) = c.borrow_mut().as_mut() {
            let options = cmd
                .get_arguments()
                .filter(|a| !a.is_positional() && !a.is_hide_set())
                .map(|a| OptionSpec {
                    short: a.get_short(),
                    long: a.get_long().map(str::to_string),
                    value: takes_value(a).then(|| {
                        a.get_value_names().and_then(|v| v.first()).map_or_else(
                            || a.get_id().to_string().to_uppercase(),
                            |v| v.to_string(),
                        )
                    }),
                })
                .collect();
            defs.push((name, options));
        }
    });
}

fn takes_value(a: &Arg) -> bool {
    matches!(a.get_action(), ArgAction::Set | ArgAction::Append)
}

/// clap's error in the project's words (its own text names clap's notions:
/// "unexpected argument '--x' found", "'--profile <PROFILE>'").
fn describe(cmd: &Command, args: &[String], e: &clap::Error) -> String {
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let arg = context(ContextKind::InvalidArg);
    match (e.kind(), arg) {
        (ErrorKind::UnknownArgument, Some(a)) if a.starts_with('-') => {
            format!("unknown option {a}")
        }
        (ErrorKind::UnknownArgument, Some(a)) => format!("unexpected argument {a:?}"),
        (ErrorKind::InvalidValue, Some(a)) if context(ContextKind::InvalidValue) == Some("") => {
            format!("option {} needs a value", spelling(cmd, a, args))
        }
        (ErrorKind::ValueValidation, _) if std::error::Error::source(e).is_some() => {
            std::error::Error::source(e)
                .map(ToString::to_string)
                .unwrap_or_default()
        }
        _ => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            first.strip_prefix("error: ").unwrap_or(first).to_string()
        }
    }
}

/// How the user wrote the option clap renders as `rendered` (`--profile
/// <PROFILE>`): the short or long name as typed, so the message repeats it.
fn spelling(cmd: &Command, rendered: &str, args: &[String]) -> String {
    let Some(arg) = cmd.get_arguments().find(|a| a.to_string() == rendered) else {
        return rendered.to_string();
    };
    let short = arg.get_short().map(|c| format!("-{c}"));
    let long = arg.get_long().map(|l| format!("--{l}"));
    let typed = args
        .iter()
        .rev()
        .find(|t| Some(t.as_str()) == short.as_deref() || Some(t.as_str()) == long.as_deref());
    typed
        .cloned()
        .or(short)
        .or(long)
        .unwrap_or_else(|| rendered.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser, PartialEq)]
    struct Cli {
        #[arg(short = 'p', long = "profile")]
        profile: Option<String>,
        #[arg(long = "keep", value_parser = keep)]
        keep: Option<usize>,
        #[arg(short = 'V')]
        verbose: bool,
        names: Vec<String>,
    }

    fn keep(v: &str) -> Result<usize, String> {
        v.parse()
            .map_err(|_| format!("--keep needs a number, not {v:?}"))
    }

    const SYNTAX: Syntax = Syntax::new("demo", "Usage: demo [-p PROFILE] [names]");

    fn p(args: &[&str]) -> Result<Parsed<Cli>, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        SYNTAX.parse(&args).map_err(|e| e.to_string())
    }

    fn run(args: &[&str]) -> Cli {
        match p(args) {
            Ok(Parsed::Run(c)) => c,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn options_values_and_words() {
        let c = run(&["-p", "a", "--keep=3", "-V", "x", "y"]);
        assert_eq!(c.profile.as_deref(), Some("a"));
        assert_eq!((c.keep, c.verbose), (Some(3), true));
        assert_eq!(c.names, ["x", "y"]);
        // The last of a repeated option wins, as the hand-written parsers did.
        assert_eq!(
            run(&["-p", "a", "--profile", "b"]).profile.as_deref(),
            Some("b")
        );
        // A lone empty argument is no argument.
        assert_eq!(run(&[""]), run(&[]));
    }

    #[test]
    fn help_and_version_are_answered_when_reached() {
        for h in ["-h", "--help", "-?"] {
            assert_eq!(p(&["x", h, "--bogus"]), Ok(Parsed::Help));
        }
        assert!(p(&["--bogus", "-h"]).is_err());
        for v in ["-v", "--version"] {
            assert_eq!(p(&[v, "-p"]), Ok(Parsed::Version));
        }
        assert_eq!(
            SYNTAX.version_line(),
            format!("demo Version {VERSION} (xcatd-rs)")
        );
    }

    #[test]
    fn other_version_flags() {
        #[derive(Debug, Parser)]
        struct Own {
            #[arg(short = 'v', long = "version")]
            version: bool,
        }
        let own = SYNTAX.version_flag(VersionFlag::Own);
        match own.parse::<Own>(&["-v".to_string()]) {
            Ok(Parsed::Run(o)) => assert!(o.version),
            other => panic!("{other:?}"),
        }
        #[derive(Debug, Parser)]
        struct Verify {
            #[arg(short = 'v')]
            verify: bool,
        }
        let upper = SYNTAX.version_flag(VersionFlag::Upper);
        let r = upper.parse::<Verify>(&["-V".to_string()]);
        assert!(matches!(r, Ok(Parsed::Version)), "{r:?}");
    }

    #[test]
    fn errors_are_one_message_then_the_usage() {
        let cases = [
            (&["--bogus"][..], "unknown option --bogus"),
            (&["-Z"], "unknown option -Z"),
            (&["-p"], "option -p needs a value"),
            (&["x", "--profile"], "option --profile needs a value"),
            (&["--keep", "many"], "--keep needs a number, not \"many\""),
        ];
        for (args, want) in cases {
            let e = p(args).unwrap_err();
            assert_eq!(e, format!("{want}\n{}", SYNTAX.usage), "{args:?}");
        }
        #[derive(Debug, Parser)]
        struct NoWords {}
        let e = SYNTAX.parse::<NoWords>(&["stray".into()]).unwrap_err();
        assert!(
            matches!(&e, HandlerError::Usage(m) if m.starts_with("unexpected argument \"stray\"\n")),
            "{e}"
        );
    }
}
