//! `xcat-netinit nic` | `xcat-netinit boot NEWROOT`: see the library's
//! documentation. Every failure is one line on stderr and an exit code the
//! initrd's `/init` acts on (10 refused, 11 RAM, 12 command line, 1 retry,
//! 2 usage).

use std::path::PathBuf;
use std::process::ExitCode;
use xcat_netinit::boot::{self, Settings};
use xcat_netinit::cmdline::Cmdline;
use xcat_netinit::error::{stderr_say, Exit, Failure};
use xcat_netinit::progress::mib;
use xcat_netinit::{nfsroot, nic, statelite};

const USAGE: &str = "usage: xcat-netinit nic | xcat-netinit boot|nfsroot|statelite NEWROOT";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["nic"] => run_nic(),
        ["boot", newroot] => run_boot(PathBuf::from(newroot)),
        ["nfsroot", newroot] => run_nfsroot(PathBuf::from(newroot)),
        ["statelite", newroot] => run_statelite(PathBuf::from(newroot)),
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
    let cmd = command_line(&settings)?;
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

/// The command line of the settings' file (`/proc/cmdline`), parsed.
fn command_line(settings: &Settings) -> Result<Cmdline, Failure> {
    boot::read_cmdline(&settings.cmdline)
}

fn run_nfsroot(newroot: PathBuf) -> Result<(), Failure> {
    let say = stderr_say();
    let settings = Settings::from_env(say.clone());
    let cmd = command_line(&settings)?;
    let additions = std::env::var_os("XCAT_NETINIT_ADDITIONS")
        .map_or_else(|| PathBuf::from("/rootfs-additions"), PathBuf::from);
    let share = nfsroot::mount_root(&newroot, &cmd, &additions, &settings.rundir, &say)?;
    say(&format!(
        "{} is ready: the NFS root {share}, read-only, with the rootfs additions over it",
        newroot.display()
    ));
    Ok(())
}

fn run_statelite(newroot: PathBuf) -> Result<(), Failure> {
    let say = stderr_say();
    let settings = Settings::from_env(say.clone());
    let cmd = command_line(&settings)?;
    let d = statelite::prepare(&newroot, &cmd, &say)?;
    let persistent = d.persistent.map_or(
        "no persistent state (statelite.statemnt is empty)".to_string(),
        |p| format!("persistent state on {p}"),
    );
    say(&format!(
        "statelite: {} entries applied, {} not (see /.statelite/statelite.log), {} litetree directories, {persistent}",
        d.applied, d.failed, d.trees
    ));
    Ok(())
}
