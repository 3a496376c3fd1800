//! Fit the coefficients of `gaterouter::tokens::fast` against exact counts.
//!
//! `cargo run -p gaterouter --example fit_fast_estimate [CORPUS]` (default
//! `bench/corpus.txt`): cuts the corpus into chunks of 256 B to 16 KiB, fits a least-
//! squares linear model per encoding on even chunks, and reports the relative error of
//! the fitted and of the shipped coefficients on odd chunks (never seen by the fit).

#![allow(clippy::unwrap_used, clippy::expect_used)]
// The Gaussian elimination indexes its matrix as the textbook writes it.
#![allow(clippy::needless_range_loop)]

use gaterouter::tokens::{Encoding, fast};

fn chunks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut pos = 0;
    let sizes = [256usize, 1024, 4096, 16384, 512, 2048, 8192];
    let mut k = 0;
    while pos < text.len() {
        let mut end = (pos + sizes[k % sizes.len()]).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push(&text[pos..end]);
        pos = end;
        k += 1;
    }
    out
}

/// Solve (X^T X) w = X^T y by Gaussian elimination with partial pivoting.
fn least_squares(xs: &[[f64; fast::FEATURES]], ys: &[f64]) -> [f64; fast::FEATURES] {
    const N: usize = fast::FEATURES;
    let mut a = [[0f64; N + 1]; N];
    for (x, y) in xs.iter().zip(ys) {
        // Weight by 1/y so that the fit minimizes relative, not absolute, error.
        let w = 1.0 / y.max(1.0);
        for i in 0..N {
            for j in 0..N {
                a[i][j] += w * x[i] * x[j];
            }
            a[i][N] += w * x[i] * y;
        }
    }
    for i in 0..N {
        a[i][i] += 1e-6; // unused features stay solvable
    }
    for col in 0..N {
        let p = (col..N)
            .max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))
            .unwrap();
        a.swap(col, p);
        for r in 0..N {
            if r != col {
                let f = a[r][col] / a[col][col];
                for c in col..=N {
                    a[r][c] -= f * a[col][c];
                }
            }
        }
    }
    let mut w = [0f64; N];
    for i in 0..N {
        w[i] = a[i][N] / a[i][i];
    }
    w
}

fn errors(pairs: &[(u64, u64)]) -> (f64, f64, f64, f64) {
    let mut rel: Vec<f64> = pairs
        .iter()
        .map(|&(est, exact)| (est as f64 - exact as f64) / exact.max(1) as f64)
        .collect();
    let total_est: u64 = pairs.iter().map(|p| p.0).sum();
    let total_exact: u64 = pairs.iter().map(|p| p.1).sum();
    rel.sort_by(f64::total_cmp);
    let mut abs: Vec<f64> = rel.iter().map(|r| r.abs()).collect();
    abs.sort_by(f64::total_cmp);
    (
        abs[abs.len() / 2],
        abs[abs.len() * 9 / 10],
        abs[abs.len() - 1],
        total_est as f64 / total_exact as f64 - 1.0,
    )
}

/// Text the corpus lacks (it is English prose, code and CJK): accented Latin, Cyrillic,
/// Greek and emoji, so the rare-character coefficients are fitted on real examples.
const EXTRA: &[&str] = &[
    "Les élèves étudièrent à l'école pendant l'été; ça a été très enrichissant, déjà-vu à côté du château.",
    "Über die Brücke gingen Mädchen und Jungen; die Straße war naß, überall Pfützen und Grüße aus München.",
    "Привет, мир! Это пример текста на русском языке, чтобы оценить количество токенов в кириллице.",
    "Γειά σου κόσμε! Αυτό είναι ένα παράδειγμα κειμένου στα ελληνικά για την εκτίμηση των διακριτικών.",
    "El niño pequeño comió una manzana en la mañana; después, corrió por el jardín con su señora madre.",
    "Thanks! 😀🎉👍 That was great 🚀🔥 see you soon 🙏❤️ 🍕🍔🍟 ok 👌",
    "Zażółć gęślą jaźń — łódź płynie po jeziorze, a żółw śpi spokojnie pod wierzbą.",
    "Merhaba dünya! Bugün hava çok güzel, şehirde yürüyüş yapmak için ideal bir gün.",
];

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/corpus.txt").to_owned());
    let text = std::fs::read_to_string(&path).expect("corpus");
    let cs = chunks(&text);
    for enc in [Encoding::O200kBase, Encoding::Cl100kBase] {
        let mut extra_test: Vec<(String, u64)> = Vec::new();
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        let mut test = Vec::new();
        // Each extra text repeated to a 1-2 KB chunk, in both halves (alternating).
        for (i, t) in EXTRA.iter().enumerate() {
            for reps in [3usize, 9, 17] {
                let c = vec![*t; reps].join(" ");
                let exact = enc.count_uncached(&c) as u64;
                if (i + reps) % 2 == 0 {
                    xs.push(fast::features(&c).map(|v| v as f64));
                    ys.push(exact as f64);
                } else {
                    extra_test.push((c, exact));
                }
            }
        }
        for (i, c) in cs.iter().enumerate() {
            let exact = enc.count_uncached(c) as u64;
            if i % 2 == 0 {
                xs.push(fast::features(c).map(|v| v as f64));
                ys.push(exact as f64);
            } else {
                test.push((*c, exact));
            }
        }
        let w = least_squares(&xs, &ys);
        let milli: Vec<u64> = w
            .iter()
            .map(|v| (v * 1000.0).round().max(0.0) as u64)
            .collect();
        let test: Vec<(&str, u64)> = test
            .into_iter()
            .chain(extra_test.iter().map(|(c, e)| (c.as_str(), *e)))
            .collect();
        let fitted: Vec<(u64, u64)> = test
            .iter()
            .map(|(c, exact)| {
                let f = fast::features(c);
                let est: u64 = f
                    .iter()
                    .zip(&milli)
                    .map(|(a, b)| a * b)
                    .sum::<u64>()
                    .div_ceil(1000);
                (est, *exact)
            })
            .collect();
        let shipped: Vec<(u64, u64)> = test
            .iter()
            .map(|(c, exact)| (fast::estimate(c, enc), *exact))
            .collect();
        println!(
            "{}: {} fit chunks, {} held-out chunks",
            enc.name(),
            xs.len(),
            test.len()
        );
        println!("  fitted coefficients (milli-tokens): {milli:?}");
        let (m, p90, max, tot) = errors(&fitted);
        println!(
            "  fitted : |rel err| median {:.1}%, p90 {:.1}%, max {:.1}%, total {:+.2}%",
            m * 100.0,
            p90 * 100.0,
            max * 100.0,
            tot * 100.0
        );
        let (m, p90, max, tot) = errors(&shipped);
        println!(
            "  shipped: |rel err| median {:.1}%, p90 {:.1}%, max {:.1}%, total {:+.2}%",
            m * 100.0,
            p90 * 100.0,
            max * 100.0,
            tot * 100.0
        );
    }
}
