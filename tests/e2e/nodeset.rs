//! nodeset and rmimage through the real daemon and the real client: the
//! lines the admin reads, the exit codes, the files in the daemon's TFTP
//! root, and the tables `nodels` and `lsdef` show afterwards.

use std::process::Output;

use xcatd_tests::{Daemon, DaemonOptions};

const IMG: &str = "rocky9.4-x86_64-netboot-compute";
const STATE: &str = "netboot rocky9.4-x86_64-compute";

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Two good nodes, one without a MAC, and a packed image on disk.
fn cluster() -> Daemon {
    let d = Daemon::start_with(DaemonOptions {
        extra_config: "tftp_dir = \"tftpboot\"\n".into(),
        ..Default::default()
    });
    d.ok(&["chtab", "key=dhcpsetup", "site.value=n"]);
    for (n, ip, mac) in [
        ("cn1", "10.99.0.11", Some("aa:bb:cc:dd:ee:11")),
        ("cn2", "10.99.0.12", None),
        ("cn3", "10.99.0.13", Some("aa:bb:cc:dd:ee:13")),
    ] {
        d.ok(&["chtab", &format!("node={n}"), "nodelist.groups=compute,all"]);
        d.ok(&["chtab", &format!("node={n}"), "noderes.netboot=xnba"]);
        d.ok(&["chtab", &format!("node={n}"), &format!("hosts.ip={ip}")]);
        if let Some(mac) = mac {
            d.ok(&["chtab", &format!("node={n}"), &format!("mac.mac={mac}")]);
        }
    }
    let dir = d.install_dir().join("netboot/rocky9.4/x86_64/compute");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["kernel", "initrd-stateless.gz", "rootimg.cpio.gz"] {
        std::fs::write(dir.join(f), f).unwrap();
    }
    for kv in [
        "provmethod=netboot",
        "osvers=rocky9.4",
        "osarch=x86_64",
        "profile=compute",
        "imagetype=linux",
    ] {
        d.ok(&[
            "chtab",
            &format!("imagename={IMG}"),
            &format!("osimage.{kv}"),
        ]);
    }
    let rootimgdir = format!("linuximage.rootimgdir={}", dir.display());
    d.ok(&["chtab", &format!("imagename={IMG}"), &rootimgdir]);
    d
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn nodeset_lines_exit_code_files_and_tables() {
    let d = cluster();
    let o = d.client(&["nodeset", "cn1-cn3", &format!("osimage={IMG}")]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert_eq!(
        out,
        format!("{IMG}: nodes boot rootimg.cpio.gz\ncn1: {STATE}\ncn3: {STATE}\n"),
        "stderr: {err}"
    );
    assert_eq!(
        err,
        format!(
            "Warning: the kernel of {IMG} has no EFI stub: UEFI nodes are told to boot from their next device\n\
             cn2: Error: No MAC address available for this node\n\
         Error: Failed to generate boot configurations for 1 of 3 node(s) on testmn: see the node errors above\n"
        )
    );
    let nodes = d.root().join("tftpboot/xcat/xnba/nodes");
    let script = std::fs::read_to_string(nodes.join("cn1")).unwrap();
    assert!(
        script.starts_with(&format!("#!gpxe\n#{STATE}\n")),
        "{script}"
    );
    assert!(script.contains("NODE=cn1 FC=0 XCATHTTPPORT=80"), "{script}");
    assert!(!nodes.join("cn2").exists());
    let shown = d.ok(&[
        "nodels",
        "cn1-cn3",
        "chain.currstate",
        "nodetype.provmethod",
    ]);
    assert_eq!(
        shown,
        format!(
            "cn1: chain.currstate: {STATE}\ncn1: nodetype.provmethod: {IMG}\n\
             cn2: chain.currstate: \ncn2: nodetype.provmethod: {IMG}\n\
             cn3: chain.currstate: {STATE}\ncn3: nodetype.provmethod: {IMG}\n"
        )
    );
    assert_eq!(
        d.ok(&["nodeset", "cn1,cn3", "stat"]),
        format!("cn1: {STATE}\ncn3: {STATE}\n")
    );
    assert_eq!(d.ok(&["nodeset", "cn1", "boot"]), "cn1: boot\n");
    assert_eq!(d.ok(&["nodeset", "cn1", "stat"]), "cn1: boot\n");
    assert!(d
        .ok(&["lsdef", "-t", "osimage"])
        .contains(&format!("{IMG}  (osimage)")));
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn dhcp_step_and_rmimage() {
    let d = cluster();
    // With DHCP setup on, nodeset runs makedhcp for the nodes it set: its
    // per-node error is nodeset's too (the boot files are written anyway).
    d.ok(&["chtab", "key=dhcpsetup", "site.value=y"]);
    let o = d.client(&["nodeset", "cn1", "boot"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert_eq!(out, "cn1: boot\n");
    assert!(
        err.contains("cn1: Error: 10.99.0.11 is on no network of the networks table"),
        "{err}"
    );
    // With its network defined, makedhcp writes the node's DHCP entry.
    d.ok(&[
        "chtab",
        "net=10.99.0.0,mask=255.255.255.0",
        "networks.netname=cluster",
        "networks.tftpserver=10.99.0.1",
    ]);
    let o = d.client(&["nodeset", "cn1", "boot"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    let entry = d.root().join("state/dhcp/hosts.d/cn1");
    let entry = std::fs::read_to_string(&entry).unwrap_or_default();
    assert!(entry.contains("aa:bb:cc:dd:ee:11"), "{entry:?}");
    d.ok(&["nodeset", "cn1", &format!("osimage={IMG}")]);
    let copy = d.root().join("tftpboot/xcat/osimage").join(IMG);
    assert!(copy.join("kernel").exists());
    let out = d.ok(&["rmimage", IMG, "--xcatdef"]);
    assert!(out.contains("Image files have been removed"), "{out}");
    assert!(!copy.exists());
    assert!(!d
        .install_dir()
        .join("netboot/rocky9.4/x86_64/compute")
        .exists());
    assert!(!d.ok(&["lsdef", "-t", "osimage"]).contains(IMG));
}

/// A statelite image: ramdisk without liteimg's archive and nfs without a
/// liteimg'd tree fail the nodes with what to run; then each kind writes
/// xCAT's statelite command line.
#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn nodeset_statelite_ramdisk_and_nfs() {
    const SL: &str = "rocky9.4-x86_64-statelite-compute";
    let d = cluster();
    let dir = d.install_dir().join("netboot/rocky9.4/x86_64/statelite");
    std::fs::create_dir_all(dir.join("rootimg")).unwrap();
    for f in ["kernel", "initrd-stateless.gz"] {
        std::fs::write(dir.join(f), f).unwrap();
    }
    let img = format!("imagename={SL}");
    d.ok(&[
        "chtab",
        &img,
        "osimage.provmethod=statelite",
        "osimage.osvers=rocky9.4",
        "osimage.osarch=x86_64",
        "osimage.profile=compute",
        "osimage.rootfstype=ramdisk",
        "osimage.nfsrootopts=vers=4.2,port=2050",
    ]);
    d.ok(&[
        "chtab",
        &img,
        &format!("linuximage.rootimgdir={}", dir.display()),
    ]);
    d.ok(&[
        "chtab",
        "node=compute",
        "statelite.statemnt=10.99.0.1:/state",
        "statelite.mntopts=vers=4.1",
    ]);
    let nodeset = |what: &str| {
        let o = d.client(&["nodeset", "cn1", &format!("osimage={SL}")]);
        let (out, err) = text(&o);
        (o.status.code(), format!("{what}:\n{out}{err}"))
    };
    let (code, said) = nodeset("ramdisk, no archive");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("cn1: Error: No packed image for platform")
            && said.contains("please run \"liteimg"),
        "{said}"
    );

    std::fs::write(dir.join("rootimg-statelite.gz"), "archive").unwrap();
    let (code, said) = nodeset("ramdisk");
    assert_eq!(code, Some(0), "{said}");
    let script = || std::fs::read_to_string(d.root().join("tftpboot/xcat/xnba/nodes/cn1")).unwrap();
    let s = script();
    assert!(s.contains("#statelite rocky9.4-x86_64-compute"), "{s}");
    assert!(
        s.contains("/rootimg-statelite.gz STATEMNT=10.99.0.1:/state XCAT=${next-server}:3001 NODE=cn1 XCATHTTPPORT="),
        "{s}"
    );
    assert!(s.contains(" MNTOPTS=vers=4.1") && !s.contains("FC="), "{s}");

    d.ok(&["chtab", &img, "osimage.rootfstype=nfs"]);
    let (code, said) = nodeset("nfs, tree not through liteimg");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("has not been through liteimg"), "{said}");
    std::fs::create_dir_all(dir.join("rootimg/.statelite")).unwrap();
    let (code, said) = nodeset("nfs");
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("nodes mount") && said.contains("read-only over NFS"),
        "{said}"
    );
    let s = script();
    assert!(
        s.contains(&format!(
            "root=nfs:${{next-server}}:{}/rootimg:ro,vers=4.2,port=2050 STATEMNT=10.99.0.1:/state XCAT=",
            dir.display()
        )),
        "{s}"
    );

    d.ok(&["chtab", &img, "osimage.nfsrootopts=rw"]);
    let (code, said) = nodeset("nfs, rw asked");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("cn1: Error: nfsrootopts cannot contain 'rw'"),
        "{said}"
    );
}
