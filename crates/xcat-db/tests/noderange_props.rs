//! Property tests of the noderange evaluator (no database involved).

use proptest::prelude::*;
use xcat_db::noderange::{natural_cmp, parse, Universe};

fn universe(names: &[String]) -> Universe {
    let mut u = Universe::new();
    for n in names {
        u.add_node(n, "everything");
    }
    u
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// `pfxA-pfxB`, `pfxA:pfxB` and `pfx[A-B]` all give exactly the generated names.
    #[test]
    fn range_expansion_round_trip(prefix in "[a-z]{1,6}", start in 0u64..5000, len in 0u64..300, width in 1usize..7) {
        let end = start + len;
        let names: Vec<String> = (start..=end).map(|i| format!("{prefix}{i:0width$}")).collect();
        let mut u = universe(&names);
        let a = format!("{prefix}{start:0width$}");
        let b = format!("{prefix}{end:0width$}");
        // Same width on both sides (the generated names share the padding).
        prop_assume!(a.len() == b.len());
        let mut expect = names.clone();
        expect.sort_by(|x, y| natural_cmp(x, y));
        prop_assert_eq!(u.expand(&format!("{a}-{b}")).unwrap(), expect.clone());
        prop_assert_eq!(u.expand(&format!("{a}:{b}")).unwrap(), expect.clone());
        let sa = &a[prefix.len()..];
        let sb = &b[prefix.len()..];
        prop_assert_eq!(u.expand(&format!("{prefix}[{sa}-{sb}]")).unwrap(), expect.clone());
        prop_assert_eq!(u.expand(&format!("{a}+{len}")).unwrap(), expect);
    }

    /// Exclusions apply after every inclusion, wherever they appear.
    #[test]
    fn exclusion_after_inclusion(
        include in proptest::collection::vec(0usize..40, 0..30),
        exclude in proptest::collection::vec(0usize..40, 0..10),
        exclude_first in any::<bool>(),
    ) {
        let names: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        let mut u = universe(&names);
        let inc: Vec<String> = include.iter().map(|&i| names[i].clone()).collect();
        let exc: Vec<String> = exclude.iter().map(|&i| format!("-{}", names[i])).collect();
        let parts: Vec<String> = if exclude_first {
            exc.iter().chain(inc.iter()).cloned().collect()
        } else {
            inc.iter().chain(exc.iter()).cloned().collect()
        };
        let got = u.expand(&parts.join(",")).unwrap();
        let mut expect: Vec<String> = include
            .iter()
            .filter(|i| !exclude.contains(i))
            .map(|&i| names[i].clone())
            .collect();
        expect.sort_by(|a, b| natural_cmp(a, b));
        expect.dedup();
        prop_assert_eq!(got, expect);
    }

    /// Output is sorted naturally and has no duplicates, however the input repeats.
    #[test]
    fn duplicates_removed_and_sorted(picks in proptest::collection::vec(0usize..25, 1..60)) {
        let names: Vec<String> = (0..25).map(|i| format!("c{}n{}", i % 3, i)).collect();
        let mut u = universe(&names);
        let nr: Vec<String> = picks.iter().map(|&i| names[i].clone()).collect();
        let got = u.expand(&nr.join(",")).unwrap();
        for w in got.windows(2) {
            prop_assert_eq!(natural_cmp(&w[0], &w[1]), std::cmp::Ordering::Less);
        }
        let mut uniq: Vec<usize> = picks.clone();
        uniq.sort();
        uniq.dedup();
        prop_assert_eq!(got.len(), uniq.len());
        // The group that holds everything, repeated and intersected, is still each node once.
        prop_assert_eq!(u.expand("everything,everything@everything,(everything)").unwrap().len(), 25);
    }

    /// Arbitrary text never panics: it parses and expands or returns an error.
    #[test]
    fn never_panics_on_arbitrary_input(s in "\\PC{0,40}") {
        let names: Vec<String> = (0..5).map(|i| format!("node{i}")).collect();
        let mut u = universe(&names);
        let _ = parse(&s);
        let _ = u.expand(&s);
    }

    /// Same for inputs built from the grammar's own punctuation.
    #[test]
    fn never_panics_on_grammar_soup(s in "[node0-9\\[\\](){},@:+/.=~!^$*-]{0,30}") {
        let names: Vec<String> = (0..5).map(|i| format!("node{i}")).collect();
        let mut u = universe(&names);
        u.declare_attr("nodetype", "os");
        let _ = u.expand(&s);
    }
}

#[test]
fn natural_order_examples() {
    let mut v = vec![
        "node10", "node2", "node1", "n", "node02a", "node2b", "a10b2", "a10b10",
    ];
    v.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(
        v,
        vec!["a10b2", "a10b10", "n", "node1", "node2", "node02a", "node2b", "node10"]
    );
}
