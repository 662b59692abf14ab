//! `xcat-netinit nic` | `xcat-netinit boot NEWROOT`: see the library's
//! documentation. Every failure is one line on stderr and an exit code the
//! initrd's `/init` acts on (10 refused, 11 RAM, 12 command line, 1 retry,
//! 2 usage).

use std::path::PathBuf;
use std::process::ExitCode;
use xcat_netinit::boot::{self, Settings};
use xcat_netinit::cmdline::Cmdline;
use xcat_netinit::error::{stderr_say, Exit, Failure};
use xcat_netinit::nic;
use xcat_netinit::progress::mib;

const USAGE: &str = "usage: xcat-netinit nic | xcat-netinit boot NEWROOT";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["nic"] => run_nic(),
        ["boot", newroot] => run_boot(PathBuf::from(newroot)),
        ["-h" | "--help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("xcat-netinit: {f}");
            ExitCode::from(f.exit.code() as u8)
        }
    }
}

fn run_nic() -> Result<(), Failure> {
    let settings = Settings::from_env(stderr_say());
    let text = std::fs::read_to_string(&settings.cmdline).map_err(|e| {
        Failure::new(
            Exit::Retry,
            format!("reading {}", settings.cmdline.display()),
            e.to_string(),
            "/init must mount /proc first",
        )
    })?;
    let cmd = Cmdline::parse(&text).map_err(|e| {
        Failure::new(
            Exit::Cmdline,
            "kernel command line",
            e.to_string(),
            "correct the node's boot parameters and boot it again",
        )
    })?;
    let sysfs = std::env::var_os("XCAT_NETINIT_SYSFS")
        .map_or_else(|| PathBuf::from("/sys/class/net"), PathBuf::from);
    let name = nic::boot_interface(&cmd, &sysfs, nic::Wait::default()).map_err(|e| {
        Failure::new(
            Exit::Retry,
            "finding the boot interface",
            e.to_string(),
            "check the cable and that the initrd has the NIC's driver (geninitrd)",
        )
    })?;
    println!("{name}");
    Ok(())
}

fn run_boot(newroot: PathBuf) -> Result<(), Failure> {
    let say = stderr_say();
    let settings = Settings::from_env(say.clone());
    let b = boot::boot(&newroot, &settings)?;
    let checked = if b.verified {
        "verified"
    } else {
        "not verified"
    };
    let what = match &b.summary {
        Some(s) => format!(
            "{} files ({}), {} directories, {} symlinks, {} hard links, {} devices, {} FIFOs",
            s.files,
            mib(s.bytes),
            s.dirs,
            s.symlinks,
            s.hardlinks,
            s.devices,
            s.fifos
        ),
        None => "squashfs under an overlay".to_string(),
    };
    say(&format!(
        "{} is ready: {} {} ({}), {what}",
        newroot.display(),
        b.format.name(),
        mib(b.bytes),
        checked
    ));
    Ok(())
}
