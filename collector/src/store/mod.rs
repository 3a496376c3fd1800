//! SQL over [`crate::db`], one module per kind of stored thing. Nothing here knows
//! the HTTP handlers; the handlers and the ingest path call down into it.

pub mod accounts;
pub mod analytics;
pub mod audit;
pub mod bills;
pub mod budgets;
pub mod export;
pub mod feedback;
pub mod keys;
pub mod learning;
pub mod orgtree;
pub mod policy;
pub mod reports;
pub mod sessions;
pub mod tokens;
pub mod units;
pub mod usage;

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// The Rust files under `dir`.
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// The layering rule of ARCHITECTURE.md: SQL statements are written only in `store/`,
    /// `db.rs` and the rollup code (part of the db layer).
    #[test]
    fn sql_is_written_only_in_the_store_and_db_layers() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        assert!(
            files.len() > 20,
            "found {} files under {src:?}",
            files.len()
        );
        let allowed = ["store/", "db.rs", "rollup/", "rollup_schema.rs"];
        let starts = [
            "\"SELECT ",
            "\"INSERT INTO",
            "\"UPDATE ",
            "\"DELETE FROM",
            "\"CREATE ",
        ];
        let mut found = Vec::new();
        for f in files {
            let rel = f
                .strip_prefix(&src)
                .unwrap_or(&f)
                .to_string_lossy()
                .replace('\\', "/");
            if allowed.iter().any(|a| rel.starts_with(a)) {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for (i, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                let upper = code.to_uppercase();
                if starts.iter().any(|s| upper.contains(s)) {
                    found.push(format!("{rel}:{}: {}", i + 1, code));
                }
            }
        }
        assert!(
            found.is_empty(),
            "SQL outside the store:\n{}",
            found.join("\n")
        );
    }
}
