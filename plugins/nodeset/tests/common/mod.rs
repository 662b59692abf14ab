//! A cluster to run nodeset against: nodes in the tables, one packed image
//! on disk, on SQLite or on a throwaway PostgreSQL database.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use xcat_db::test_support::TempDatabase;
use xcat_db::Db;
use xcat_plugin::testing::{Harness, Outcome};
use xcat_plugin::NodeRecord;

pub const IMG: &str = "rocky9.4-x86_64-netboot-compute";

/// A harness with its database guard (PostgreSQL) kept alive.
pub struct Cluster {
    pub h: Harness,
    _pg: Option<TempDatabase>,
}

impl Cluster {
    pub async fn sqlite() -> Cluster {
        let h = Harness::new(plugin_nodeset::handlers()).await;
        Cluster::setup(h, None).await
    }

    pub async fn postgres() -> Cluster {
        let pg = TempDatabase::from_env();
        let db = Db::connect(pg.url())
            .await
            .expect("PostgreSQL test database");
        let h = Harness::with_db(db, plugin_nodeset::handlers());
        Cluster::setup(h, Some(pg)).await
    }

    async fn setup(h: Harness, pg: Option<TempDatabase>) -> Cluster {
        let c = Cluster { h, _pg: pg };
        c.site("dhcpsetup", "n").await;
        c.define_image().await;
        c
    }

    pub fn db(&self) -> &Db {
        self.h.db()
    }

    pub fn tftp(&self) -> PathBuf {
        self.h.settings().tftp_dir.clone()
    }

    pub fn image_dir(&self) -> PathBuf {
        self.h
            .settings()
            .install_dir
            .join("netboot/rocky9.4/x86_64/compute")
    }

    pub async fn site(&self, key: &str, value: &str) {
        self.db()
            .upsert("site", &[("key", key)], &[("value", value)])
            .await
            .unwrap();
    }

    /// The osimage/linuximage rows and the image's files: a kernel with an
    /// EFI stub, the stateless initrd, a cpio.gz archive.
    async fn define_image(&self) {
        let dir = self.image_dir();
        self.db()
            .upsert(
                "osimage",
                &[("imagename", IMG)],
                &[
                    ("provmethod", "netboot"),
                    ("osvers", "rocky9.4"),
                    ("osarch", "x86_64"),
                    ("profile", "compute"),
                    ("imagetype", "linux"),
                ],
            )
            .await
            .unwrap();
        let d = dir.display().to_string();
        self.db()
            .upsert("linuximage", &[("imagename", IMG)], &[("rootimgdir", &d)])
            .await
            .unwrap();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("kernel"), efi_kernel()).unwrap();
        fs::write(dir.join("initrd-stateless.gz"), b"initrd").unwrap();
        fs::write(dir.join("rootimg.cpio.gz"), b"archive").unwrap();
    }

    /// A node: `netboot`, its address and MAC (None: unset).
    pub async fn node(&self, name: &str, netboot: &str, ip: Option<&str>, mac: Option<&str>) {
        self.db()
            .upsert("nodelist", &[("node", name)], &[("groups", "compute,all")])
            .await
            .unwrap();
        self.db()
            .upsert("noderes", &[("node", name)], &[("netboot", netboot)])
            .await
            .unwrap();
        if let Some(ip) = ip {
            self.db()
                .upsert("hosts", &[("node", name)], &[("ip", ip)])
                .await
                .unwrap();
        }
        if let Some(mac) = mac {
            self.db()
                .upsert("mac", &[("node", name)], &[("mac", mac)])
                .await
                .unwrap();
        }
    }

    pub async fn nodeset(&self, nodes: &[&str], args: &[&str]) -> Outcome {
        self.h.request("nodeset", args).nodes(nodes).run().await
    }

    pub async fn attr(&self, table: &str, node: &str, col: &str) -> Option<String> {
        let a = self
            .db()
            .node_attrs(&[node.to_string()], table, &[col])
            .await
            .unwrap();
        a[node].get(col).cloned()
    }

    pub fn xnba(&self, node: &str) -> PathBuf {
        self.tftp().join("xcat/xnba/nodes").join(node)
    }

    pub fn grub2(&self, name: &str) -> PathBuf {
        self.tftp().join("boot/grub2").join(name)
    }
}

/// 512 bytes that look like an x86-64 EFI-stub kernel's head.
pub fn efi_kernel() -> Vec<u8> {
    let mut k = vec![0u8; 4096];
    k[..2].copy_from_slice(b"MZ");
    k[0x40..0x46].copy_from_slice(b"PE\0\0\x64\x86");
    k
}

/// Every node record of an outcome.
pub fn records(o: &Outcome) -> Vec<NodeRecord> {
    o.responses.iter().flat_map(|r| r.nodes()).collect()
}

/// The record of `node`.
pub fn record(o: &Outcome, node: &str) -> NodeRecord {
    records(o)
        .into_iter()
        .find(|r| r.name == node)
        .unwrap_or_else(|| panic!("no record of {node}"))
}

pub fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Names in `dir` (sorted).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// One test per backend: `both_backends!(a, b)` runs `a(Cluster)` on SQLite
/// and, in the PostgreSQL tier, on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Cluster::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs PostgreSQL (XCATD_TEST_PG_URL): ./scripts/test-all runs it"]
            async fn postgres() {
                super::$name($crate::common::Cluster::postgres().await).await;
            }
        }
    )*};
}
