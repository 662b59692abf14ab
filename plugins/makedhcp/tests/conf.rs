//! The generated configuration's content, pure: the main file, the node
//! files, the mac field, the boot file per client class, the server choice.

use std::net::Ipv4Addr;
use std::path::Path;

use plugin_makedhcp::conf::{self, Boot, Gateway, HostLine, Network};
use plugin_makedhcp::plan::{self, Env, NodeRows, Site};
use xcat_plugin::boot::DhcpPaths;

fn net(net: &str, mask: &str) -> Network {
    Network {
        net: net.parse().unwrap(),
        mask: mask.parse().unwrap(),
        dynamic: None,
        gateway: Gateway::Server,
        nameservers: vec![],
        domain: None,
        tftpserver: None,
        mgtifname: None,
    }
}

#[test]
fn main_file_serves_dhcp_and_tftp_without_dns() {
    let paths = DhcpPaths::new(Path::new("/var/lib/xcatd"));
    let mut a = net("10.99.60.0", "255.255.255.0");
    a.dynamic = Some((
        "10.99.60.200".parse().unwrap(),
        "10.99.60.250".parse().unwrap(),
    ));
    a.gateway = Gateway::Addr("10.99.60.254".parse().unwrap());
    a.nameservers = vec!["<xcatmaster>".into(), "10.0.0.53".into()];
    a.domain = Some("cluster.example".into());
    let mut b = net("192.168.5.0", "255.255.255.0");
    b.gateway = Gateway::None;
    let text = conf::render_main(&conf::MainConf {
        paths: &paths,
        tftp_dir: Path::new("/tftpboot"),
        lease_secs: 43200,
        networks: &[a, b],
    });
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    for want in [
        "port=0",
        "enable-tftp",
        "tftp-root=/tftpboot",
        "dhcp-leasefile=/var/lib/xcatd/dhcp/dnsmasq.leases",
        "dhcp-hostsdir=/var/lib/xcatd/dhcp/hosts.d",
        "dhcp-optsdir=/var/lib/xcatd/dhcp/opts.d",
        "dhcp-userclass=set:xcat-ipxe,iPXE",
        "dhcp-userclass=set:xcat-ipxe,xNBA",
        "dhcp-match=set:xcat-ipxe,175",
        "dhcp-match=set:xcat-efi,option:client-arch,7",
        "dhcp-match=set:xcat-efi,option:client-arch,9",
        "dhcp-range=set:xcatnet0,10.99.60.200,10.99.60.250,255.255.255.0,43200",
        "dhcp-option=tag:xcatnet0,option:router,10.99.60.254",
        "dhcp-option=tag:xcatnet0,option:dns-server,0.0.0.0,10.0.0.53",
        "dhcp-option=tag:xcatnet0,option:domain-name,cluster.example",
        // No dynamic range: known nodes only.
        "dhcp-range=set:xcatnet1,192.168.5.0,static,255.255.255.0,43200",
        // No gateway: an empty router option, so dnsmasq names none.
        "dhcp-option=tag:xcatnet1,option:router",
    ] {
        assert!(lines.contains(&want), "{want:?} missing from\n{text}");
    }
    // No interface selection in the file (the daemon or admin adds it),
    // and nothing the second network did not ask for.
    assert!(!lines.iter().any(|l| l.starts_with("interface=")));
    assert!(!text.contains("xcatnet1,option:dns-server"));
}

#[test]
fn node_files_tag_the_host_and_choose_the_boot_file_by_client() {
    let hosts = conf::render_hosts(
        "n1",
        &[HostLine {
            mac: "52:54:00:60:00:10".into(),
            ip: "10.99.60.10".parse().unwrap(),
            name: Some("n1".into()),
        }],
    );
    assert_eq!(
        hosts.lines().nth(1),
        Some("52:54:00:60:00:10,set:xcatnode-n1,10.99.60.10,n1")
    );
    let url = conf::script_url("10.99.60.1".parse().unwrap(), 8080, "n1");
    assert_eq!(url, "http://10.99.60.1:8080/tftpboot/xcat/xnba/nodes/n1");
    let opts = conf::render_opts("n1", &Boot::Xnba { script_url: url });
    let lines: Vec<&str> = opts.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "tag:xcatnode-n1,tag:!xcat-ipxe,tag:!xcat-efi,option:bootfile-name,xcat/xnba.kpxe",
            "tag:xcatnode-n1,tag:!xcat-ipxe,tag:xcat-efi,option:bootfile-name,xcat/xnba.efi",
            "tag:xcatnode-n1,tag:xcat-ipxe,tag:!xcat-efi,option:bootfile-name,http://10.99.60.1:8080/tftpboot/xcat/xnba/nodes/n1",
            "tag:xcatnode-n1,tag:xcat-ipxe,tag:xcat-efi,option:bootfile-name,http://10.99.60.1:8080/tftpboot/xcat/xnba/nodes/n1.uefi",
        ]
    );
    // Port 80 is not written.
    assert_eq!(
        conf::script_url("10.0.0.1".parse().unwrap(), 80, "a"),
        "http://10.0.0.1/tftpboot/xcat/xnba/nodes/a"
    );
    let grub = conf::render_opts("n1", &Boot::Grub2);
    assert!(grub.contains("tag:xcatnode-n1,option:bootfile-name,/boot/grub2/grub2-n1\n"));
    let none = conf::render_opts("n1", &Boot::None);
    assert!(!none.contains("bootfile-name"), "{none}");
    assert_eq!(
        conf::query_lines("n1", &hosts),
        ["n1: ip-address = 10.99.60.10, hardware-address = 52:54:00:60:00:10"]
    );
}

#[test]
fn mac_field_forms() {
    let e = conf::parse_mac_field(
        "52:54:00:AA:bb:01|52:54:00:aa:bb:02!n1-ib| 52:54:00:aa:bb:03!*NOIP*",
    );
    assert_eq!(e.len(), 3);
    assert_eq!(e[1].name.as_deref(), Some("n1-ib"));
    assert_eq!(
        conf::normalize_mac("52-54-00-AA-BB-01").as_deref(),
        Some("52:54:00:aa:bb:01")
    );
    for bad in [
        "52:54:00:aa:bb",
        "52:54:00:aa:bb:0g",
        "525400aabb01",
        "52:54:00:aa:bb:01\n",
    ] {
        assert!(
            conf::normalize_mac(bad).is_none() || bad.ends_with('\n'),
            "{bad:?}"
        );
    }
    // Names that would break dnsmasq's syntax are refused.
    for bad in ["a,b", "a b", "a\nb", "#x", ".x", ""] {
        assert!(!conf::safe_node_name(bad), "{bad:?}");
    }
    assert!(conf::safe_node_name("rack1-n01.c"));
}

fn rows(mac: &str, ip: Option<&str>) -> NodeRows {
    NodeRows {
        mac: Some(mac.into()),
        hosts_ip: ip.map(String::from),
        ..Default::default()
    }
}

fn env<'a>(nets: &'a [Network], site: &'a Site, local: &'a [Ipv4Addr]) -> Env<'a> {
    Env {
        networks: nets,
        site,
        http_port: 80,
        local,
        resolve: &|n| match n {
            "n1-ib" => Some("10.99.61.10".parse().unwrap()),
            "mn" => Some("10.99.60.2".parse().unwrap()),
            _ => None,
        },
    }
}

#[test]
fn plans_per_node_with_errors_named() {
    let nets = [net("10.99.60.0", "255.255.255.0")];
    let site = Site::default();
    let local: [Ipv4Addr; 1] = ["10.99.60.1".parse().unwrap()];
    let env = env(&nets, &site, &local);

    // Extra MACs: a second NIC of the node shares its line; a named one
    // has its own address.
    let p = plan::plan_node(
        "n1",
        &rows(
            "52:54:00:00:00:01|52:54:00:00:00:02!n1|52:54:00:00:00:03!n1-ib",
            Some("10.99.60.10"),
        ),
        &env,
    )
    .unwrap();
    assert_eq!(p.hosts.len(), 2);
    assert_eq!(p.hosts[0].mac, "52:54:00:00:00:01,52:54:00:00:00:02");
    assert_eq!(p.hosts[1].ip, "10.99.61.10".parse::<Ipv4Addr>().unwrap());
    // The server: this host's address on the node's network.
    assert_eq!(
        p.boot,
        Boot::Xnba {
            script_url: "http://10.99.60.1/tftpboot/xcat/xnba/nodes/n1".into()
        }
    );

    let err = |r: NodeRows| plan::plan_node("nx", &r, &env).unwrap_err();
    assert!(err(NodeRows::default()).contains("no MAC address"));
    assert!(err(rows("52:54:00:00:00:01", None)).contains("no IP address"));
    assert!(err(rows("zz", Some("10.99.60.9"))).contains("invalid MAC"));
    assert!(err(rows("52:54:00:00:00:01", Some("10.1.1.1"))).contains("on no network"));
    let mut r = rows("52:54:00:00:00:01", Some("10.99.60.9"));
    r.netboot = Some("petitboot".into());
    assert!(err(r).contains("noderes.netboot=petitboot"));
}

#[test]
fn server_order_and_states() {
    let mut n = net("10.99.60.0", "255.255.255.0");
    n.tftpserver = Some("10.99.60.3".parse().unwrap());
    let nets = [n];
    let site = Site::default();
    let env = env(&nets, &site, &[]);
    let url = |r: &NodeRows| match plan::plan_node("n1", r, &env).unwrap().boot {
        Boot::Xnba { script_url } => script_url,
        other => panic!("{other:?}"),
    };
    let mut r = rows("52:54:00:00:00:01", Some("10.99.60.10"));
    assert!(
        url(&r).starts_with("http://10.99.60.3/"),
        "networks.tftpserver"
    );
    r.xcatmaster = Some("mn".into());
    assert!(
        url(&r).starts_with("http://10.99.60.2/"),
        "noderes.xcatmaster (resolved)"
    );
    r.tftpserver = Some("10.99.60.4".into());
    assert!(
        url(&r).starts_with("http://10.99.60.4/"),
        "noderes.tftpserver first"
    );

    r.currstate = Some("boot".into());
    assert_eq!(plan::plan_node("n1", &r, &env).unwrap().boot, Boot::None);
    r.currstate = Some("netboot debian12-x86_64-compute".into());
    r.netboot = Some("grub2".into());
    assert_eq!(plan::plan_node("n1", &r, &env).unwrap().boot, Boot::Grub2);

    // Without any server address the node is refused with what to set.
    let bare = [net("10.99.60.0", "255.255.255.0")];
    let env = Env {
        networks: &bare,
        ..env
    };
    let e =
        plan::plan_node("n1", &rows("52:54:00:00:00:01", Some("10.99.60.10")), &env).unwrap_err();
    assert!(e.contains("set noderes.tftpserver"), "{e}");
}

#[test]
fn local_addresses_from_the_routing_trie() {
    let text = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n\
                Local:\n  +-- 10.99.60.0/24 2 0 2\n     |-- 10.99.60.1\n        /32 host LOCAL\n\
                     |-- 10.99.60.255\n        /32 link BROADCAST\n     |-- 127.0.0.1\n        /32 host LOCAL\n";
    assert_eq!(
        plan::local_from_fib_trie(text),
        ["10.99.60.1".parse::<Ipv4Addr>().unwrap()]
    );
}

#[test]
fn networks_rows_are_checked() {
    let row = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let site = Site {
        nameservers: vec!["10.0.0.53".into()],
        domain: Some("site.example".into()),
        ..Default::default()
    };
    let (nets, warnings) = plan::networks(
        &[
            row(&[
                ("net", "10.99.60.0"),
                ("mask", "255.255.255.0"),
                ("dynamicrange", "10.99.60.100-10.99.60.150"),
            ]),
            row(&[("net", "fd00::"), ("mask", "64")]),
            row(&[
                ("net", "10.1.0.0"),
                ("mask", "255.255.0.0"),
                ("gateway", "nonsense"),
            ]),
        ],
        &site,
    );
    assert_eq!(nets.len(), 1);
    assert_eq!(
        nets[0].nameservers,
        ["10.0.0.53"],
        "site.nameservers by default"
    );
    assert_eq!(nets[0].domain.as_deref(), Some("site.example"));
    assert_eq!(nets[0].gateway, Gateway::None);
    assert!(nets[0].in_dynamic_range("10.99.60.120".parse().unwrap()));
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("IPv6"));
    assert!(warnings[1].contains("networks.gateway"));
}
