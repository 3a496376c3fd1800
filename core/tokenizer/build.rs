//! Builds the character-class tables the pre-tokenizers read, from `regex-syntax`'s Unicode
//! tables (the ones tiktoken's regexes are compiled against), so both agree on every
//! character: a 64 KiB table for the Basic Multilingual Plane and a sorted range list above.

use std::io::Write;

use regex_syntax::hir::{Class, HirKind};

/// Bit per class; must match `src/classes.rs`.
const CLASSES: [(&str, u8); 8] = [
    (r"\p{Lu}", 1),
    (r"\p{Ll}", 2),
    (r"\p{Lt}", 4),
    (r"\p{Lm}", 8),
    (r"\p{Lo}", 16),
    (r"\p{M}", 32),
    (r"\p{N}", 64),
    (r"\s", 128),
];

fn ranges(pattern: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::parse(pattern).expect("class pattern parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(cls)) => cls
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        other => panic!("{pattern} is not a Unicode class: {other:?}"),
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let mut table = vec![0u8; 0x110000];
    for (pattern, bit) in CLASSES {
        for (lo, hi) in ranges(pattern) {
            for cp in lo..=hi {
                table[cp as usize] |= bit;
            }
        }
    }
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("bmp_classes.bin"), &table[..0x10000]).expect("write bmp table");
    let mut astral = String::from("static ASTRAL: &[(u32, u32, u8)] = &[\n");
    let mut cp = 0x10000usize;
    while cp < table.len() {
        let bits = table[cp];
        let start = cp;
        while cp < table.len() && table[cp] == bits {
            cp += 1;
        }
        if bits != 0 {
            astral.push_str(&format!("    ({start:#x}, {:#x}, {bits}),\n", cp - 1));
        }
    }
    astral.push_str("];\n");
    let mut f = std::fs::File::create(out.join("astral_classes.rs")).expect("create astral table");
    f.write_all(astral.as_bytes()).expect("write astral table");
}
