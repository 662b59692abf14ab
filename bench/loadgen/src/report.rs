//! Result rows, the merged report and its table.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One measured figure beside the baseline measured in the same run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// The same measurement on the reference (see `baseline_what`).
    pub baseline: Option<f64>,
    /// `value / baseline`.
    pub ratio: Option<f64>,
    /// The requirement, as text (`>= 2000`, `< 50`), if any.
    pub target: Option<String>,
    /// Whether `value` meets `target` (None without a target).
    pub met: Option<bool>,
    /// What the baseline is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_what: Option<String>,
}

impl Row {
    pub fn new(name: impl Into<String>, value: f64, unit: &str) -> Row {
        Row {
            name: name.into(),
            value,
            unit: unit.into(),
            baseline: None,
            ratio: None,
            target: None,
            met: None,
            baseline_what: None,
        }
    }

    pub fn baseline(mut self, b: f64, what: &str) -> Row {
        self.baseline = Some(b);
        self.ratio = (b != 0.0).then(|| self.value / b);
        self.baseline_what = Some(what.into());
        self
    }

    /// `at_least`: the value must be >= `t`; else it must be < `t`.
    pub fn target(mut self, at_least: bool, t: f64) -> Row {
        self.target = Some(if at_least {
            format!(">= {t}")
        } else {
            format!("< {t}")
        });
        self.met = Some(if at_least {
            self.value >= t
        } else {
            self.value < t
        });
        self
    }
}

pub fn write_rows(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(rows)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Rows from a result file written by us or by another bench part: a list of
/// rows, or an object holding one under `results` or `rows`.
fn read_rows(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let list = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("results").or_else(|| o.remove("rows")) {
            Some(Value::Array(a)) => a,
            _ => anyhow::bail!("{}: no list of results found", path.display()),
        },
        _ => anyhow::bail!("{}: not a list of results", path.display()),
    };
    Ok(list)
}

fn machine() -> Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    serde_json::json!({
        "cores": cores,
        "memory_bytes": mem_kib * 1024,
        "cpu": cpu,
    })
}

fn num(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.abs() >= 100.0 {
                format!("{f:.0}")
            } else if f.abs() >= 1.0 {
                format!("{f:.2}")
            } else {
                format!("{f:.3}")
            }
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "-".into(),
    }
}

pub fn merge(inputs: &[PathBuf], out: &Path, commit: &str) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for p in inputs {
        match read_rows(p) {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => eprintln!("loadgen report: skipping {}: {e:#}", p.display()),
        }
    }
    let report = serde_json::json!({
        "commit": commit,
        "machine": machine(),
        "results": rows,
    });
    std::fs::write(out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", out.display()))?;

    let header = [
        "name", "value", "unit", "baseline", "ratio", "target", "met",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in &rows {
        table.push(vec![
            r.get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
            num(r, "value"),
            r.get("unit")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            num(r, "baseline"),
            num(r, "ratio"),
            r.get("target")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string(),
            match r.get("met") {
                Some(Value::Bool(true)) => "yes".into(),
                Some(Value::Bool(false)) => "NO".into(),
                _ => "-".into(),
            },
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for (n, r) in table.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 || i == 2 || i == 5 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", line.join("  "));
        if n == 0 {
            println!(
                "{}",
                widths
                    .iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("  ")
            );
        }
    }
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| r.get("met") == Some(&Value::Bool(false)))
        .filter_map(|r| r.get("name").and_then(Value::as_str))
        .collect();
    println!();
    println!("machine: {}  commit: {commit}", report["machine"]);
    if missed.is_empty() {
        println!("all targets met");
    } else {
        println!("targets NOT met: {}", missed.join(", "));
    }
    Ok(())
}
