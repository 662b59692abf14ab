//! Archives whose cost lies in sizes rather than names: sparse files declaring
//! huge logical sizes, and hard-link groups of many members sharing large
//! xattrs. Each must end quickly, refused or accepted, with bounded memory.
mod common;

use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xcat_image::budget::Budget;
use xcat_image::tar::testing::TarBuilder;
use xcat_image::{extract, ExtractError, ExtractOptions};

fn run(
    archive: &[u8],
    budget: Budget,
) -> (
    Result<xcat_image::ExtractSummary, ExtractError>,
    Duration,
    tempfile::TempDir,
) {
    let top = tempfile::tempdir().unwrap();
    let opts = ExtractOptions {
        budget,
        ..ExtractOptions::default()
    };
    let t = Instant::now();
    let r = extract(archive, top.path(), &opts);
    (r, t.elapsed(), top)
}

#[test]
fn absurd_logical_sizes_are_refused_at_once() {
    // one byte at 2^62 (hashing the hole took days), and 15 TiB that a packer
    // would read as zeros
    for (name, realsize) in [("at-2-62", 1u64 << 62), ("fifteen-tib", 15 << 40)] {
        let a = TarBuilder::new()
            .sparse(name, realsize, &[(realsize - 1, b"x")])
            .end();
        let (r, took, top) = run(&a, Budget::default());
        let e = r.expect_err("an absurd logical size must be refused");
        let msg = e.to_string();
        assert!(matches!(e, ExtractError::Budget(_)), "{e:?}");
        assert!(
            msg.contains(name) && msg.contains(&realsize.to_string()) && msg.contains("budget"),
            "the error names the entry, its size and the budget: {msg}"
        );
        assert!(took < Duration::from_secs(2), "{name}: took {took:?}");
        assert!(
            !top.path().join(name).exists(),
            "nothing is created for a refused file"
        );
    }
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn the_sum_of_logical_sizes_is_bounded() {
    // the first file is written, with its owner
    require_root_and_tools(&[]);
    let budget = Budget {
        max_logical_bytes: 1 << 30,
        ..Budget::default()
    };
    let half = 600 << 20;
    let a = TarBuilder::new().sparse("one", half, &[(half - 1, b"1")]);
    let a = a.sparse("two", half, &[(half - 1, b"2")]).end();
    let (r, _, _top) = run(&a, budget);
    let msg = r.expect_err("over the total").to_string();
    assert!(
        msg.starts_with("entry two: the logical size of all files") && msg.contains("1073741824"),
        "{msg}"
    );
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn a_huge_hole_within_the_budget_is_hashed_in_constant_time() {
    require_root_and_tools(&[]);
    let size = 900u64 << 30;
    let a = TarBuilder::new()
        .sparse("big", size, &[(0, b"head"), (size - 4, b"tail")])
        .end();
    let (r, took, top) = run(&a, Budget::default());
    let s = r.expect("within the budget");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let m = std::fs::metadata(top.path().join("big")).unwrap();
    assert_eq!(m.len(), size);
    // the extractor's digest is the one a scan of the written file finds
    let scanned = xcat_image::scan_tree(top.path()).unwrap();
    assert_eq!(
        s.manifest.get(b"big").unwrap().unwrap().content_hash,
        scanned.get(b"big").unwrap().content_hash
    );
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn many_hard_links_share_one_set_of_xattrs_and_group_in_linear_time() {
    require_root_and_tools(&[]);
    let big = vec![0x5au8; 60_000];
    let mut records: Vec<(String, &[u8])> = Vec::new();
    for i in 0..15 {
        records.push((format!("SCHILY.xattr.user.big{i}"), &big));
    }
    let records: Vec<(&str, &[u8])> = records.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut t = TarBuilder::new().pax(&records).file("f", b"inode").dir("l");
    // a chain, each link to the one before: the worst shape for grouping
    let n = 40_000;
    let mut prev = "f".to_string();
    for i in 0..n {
        let name = format!("l/{i:05}");
        t = t.hardlink(&name, &prev);
        prev = name;
    }
    let a = t.end();
    let start = Instant::now();
    let (r, _, _top) = run(&a, Budget::default());
    let s = r.expect("hard links are fine");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // the members share one stored set: loaded whole, one set in memory too
    let m = s.manifest.to_manifest().unwrap();
    let f = m.get(b"f").unwrap();
    assert_eq!(f.xattrs.len(), 15);
    for i in [0, n / 2, n - 1] {
        let l = m.get(format!("l/{i:05}").as_bytes()).unwrap();
        assert!(
            Arc::ptr_eq(&l.xattrs, &f.xattrs),
            "link {i} copies the xattrs"
        );
        assert_eq!(l.hardlink.as_deref(), Some(&b"f"[..]));
        assert_eq!(l.content_hash, f.content_hash);
    }
    let mut tsv = Vec::new();
    s.manifest.write_tsv(&mut tsv).unwrap();
    assert!(
        tsv.len() < 8 << 20,
        "the TSV repeats the xattrs: {} bytes",
        tsv.len()
    );
    eprintln!("{n} chained hard links: {took:?}");
}
