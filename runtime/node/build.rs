//! Embeds the web console (`console/dist/`, built by `make console` from `console/`) in the
//! node: `$OUT_DIR/console_assets.rs` lists each file with its content type and its bytes. A
//! build without `console/dist/` embeds none, and `/console` says how to build it.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let dist = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("../../console/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dist)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    let mut out =
        String::from("/// The console's files: (name, content type, bytes).\npub(crate) const ASSETS: &[(&str, &str, &[u8])] = &[\n");
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).expect("a file name in UTF-8");
        let kind = match path.extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("png") => "image/png",
            Some("svg") => "image/svg+xml",
            _ => "application/octet-stream",
        };
        let absolute = path.canonicalize().expect("a file that exists");
        writeln!(out, "    ({name:?}, {kind:?}, include_bytes!({:?})),", absolute.display().to_string()).expect("to a String");
    }
    out.push_str("];\n");
    let target = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("console_assets.rs");
    std::fs::write(target, out).expect("write the asset list");
}
