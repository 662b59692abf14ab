//! What the statelite commands read from the tables.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use xcat_db::{Attrs, Db, DbError};
use xcat_plugin::Identity;

use crate::entries::{self, LiteFileRow, LiteTreeRow};

/// `provmethod` words that are not image names (xCAT's list).
const NOT_IMAGES: &[&str] = &["statelite", "netboot", "install"];

pub struct Tables<'a> {
    db: &'a Db,
}

fn value(a: &Attrs, col: &str) -> String {
    a.get(col).cloned().unwrap_or_default()
}

impl<'a> Tables<'a> {
    pub fn new(db: &'a Db) -> Tables<'a> {
        Tables { db }
    }

    /// The image of `node`, or the message xCAT prints when it has none.
    pub async fn image_of(&self, node: &str) -> Result<Result<String, String>, DbError> {
        let nt = self
            .db
            .node_attrs(
                &[node.to_string()],
                "nodetype",
                &["os", "arch", "profile", "provmethod"],
            )
            .await?;
        let a = nt.get(node).cloned().unwrap_or_default();
        if let Some(p) = a
            .get("provmethod")
            .filter(|p| !NOT_IMAGES.contains(&p.as_str()))
        {
            return Ok(Ok(p.clone()));
        }
        Ok(match (a.get("os"), a.get("arch"), a.get("profile")) {
            (Some(os), Some(arch), Some(profile)) => Ok(format!("{os}-{arch}-statelite-{profile}")),
            _ => Err(format!(
                "{node} does not have os, arch, or profile defined in nodetype table"
            )),
        })
    }

    pub async fn image_defined(&self, image: &str) -> Result<bool, DbError> {
        Ok(self.db.get_row("osimage", image).await?.is_some())
    }

    /// `osimage.groups` of `image`.
    async fn groups(&self, image: &str) -> Result<Vec<String>, DbError> {
        let row = self.db.get_row("osimage", image).await?;
        Ok(row
            .and_then(|r| r.get("groups").cloned())
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The merged litefile entries of `image`: path → options.
    pub async fn files(&self, image: &str) -> Result<BTreeMap<String, String>, DbError> {
        let rows: Vec<LiteFileRow> = self
            .db
            .rows("litefile")
            .await?
            .iter()
            .map(|a| LiteFileRow {
                image: value(a, "image"),
                file: value(a, "file"),
                options: value(a, "options"),
            })
            .collect();
        Ok(entries::files_of(image, &self.groups(image).await?, &rows))
    }

    /// The merged litetree entries of `image`, by ascending priority.
    pub async fn trees(&self, image: &str) -> Result<Vec<(String, String)>, DbError> {
        let rows: Vec<LiteTreeRow> = self
            .db
            .rows("litetree")
            .await?
            .iter()
            .map(|a| LiteTreeRow {
                priority: value(a, "priority"),
                image: value(a, "image"),
                directory: value(a, "directory"),
                mntopts: value(a, "mntopts"),
            })
            .collect();
        Ok(entries::trees_of(image, &self.groups(image).await?, &rows))
    }

    /// `statelite.statemnt` of `node` (its groups' rows count).
    pub async fn statemnt(&self, node: &str) -> Result<Option<String>, DbError> {
        let m = self
            .db
            .node_attrs(&[node.to_string()], "statelite", &["statemnt"])
            .await?;
        Ok(m.get(node).and_then(|a| a.get("statemnt")).cloned())
    }

    /// The node a peer is: the first whose `hosts.ip` is its address, else
    /// a node named as the peer's host.
    pub async fn node_of_peer(&self, who: &Identity) -> Result<Option<String>, DbError> {
        if let Ok(addr) = who.peer.parse::<SocketAddr>() {
            let ip = addr.ip().to_canonical().to_string();
            if let Some(n) = self
                .db
                .keys_where("hosts", "ip", &ip)
                .await?
                .into_iter()
                .next()
            {
                return Ok(Some(n));
            }
        }
        let Some(host) = who.host.as_deref() else {
            return Ok(None);
        };
        let nodes = self.db.nodes().await?;
        Ok(nodes.groups_of(host).map(|_| host.to_string()))
    }
}
