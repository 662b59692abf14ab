//! Where a node is reached.

use xcat_db::{Attrs, Db, DbError};

/// A node's address from its `hosts` attributes: `hosts.ip` trimmed (a stray blank
/// in a table edit must not make ssh fail), else the node name itself.
pub fn address_from(hosts: Option<&Attrs>, node: &str) -> String {
    hosts
        .and_then(|a| a.get("ip"))
        .map(|ip| ip.trim())
        .filter(|ip| !ip.is_empty())
        .unwrap_or(node)
        .to_string()
}

/// The addresses of `nodes`, in the same order (one table query for all).
pub async fn node_addresses(db: &Db, nodes: &[String]) -> Result<Vec<String>, DbError> {
    let hosts = db.node_attrs(nodes, "hosts", &["ip"]).await?;
    Ok(nodes
        .iter()
        .map(|n| address_from(hosts.get(n), n))
        .collect())
}

/// The address of one node.
pub async fn node_address(db: &Db, node: &str) -> Result<String, DbError> {
    let mut one = node_addresses(db, &[node.to_string()]).await?;
    Ok(one.pop().unwrap_or_else(|| node.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(v: &str) -> Attrs {
        [("ip".to_string(), v.to_string())].into_iter().collect()
    }

    #[test]
    fn ip_trimmed_else_the_name() {
        assert_eq!(address_from(Some(&ip(" 10.0.0.5 ")), "n1"), "10.0.0.5");
        assert_eq!(address_from(Some(&ip("  ")), "n1"), "n1");
        assert_eq!(address_from(Some(&Attrs::new()), "n1"), "n1");
        assert_eq!(address_from(None, "n1"), "n1");
    }

    #[tokio::test]
    async fn looks_up_hosts_ip_in_node_order() {
        let t = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", t.path().join("xcat.db").display());
        let db = Db::connect(&url).await.unwrap();
        for n in ["n1", "n2"] {
            db.upsert("nodelist", &[("node", n)], &[("groups", "all")])
                .await
                .unwrap();
        }
        db.upsert("hosts", &[("node", "n2")], &[("ip", "10.0.0.2 ")])
            .await
            .unwrap();
        let nodes = vec!["n2".to_string(), "n1".to_string()];
        assert_eq!(
            node_addresses(&db, &nodes).await.unwrap(),
            ["10.0.0.2", "n1"]
        );
        assert_eq!(node_address(&db, "n2").await.unwrap(), "10.0.0.2");
    }
}
