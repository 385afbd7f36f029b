//! The dashboard's files, embedded in the binary.
//!
//! Why it is its own module: the dashboard at `/` must work from `cargo run` alone, with no
//! build step for the user and no CDN (a user's network may not reach one). Its HTML, script,
//! style sheet, icon and the vendored chart library (uPlot, `assets/vendor/uplot/`) are compiled
//! in with `include_bytes!` and served from memory.

/// One embedded file: its path under `/assets/` (or the site root), type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!("../assets/", $path)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("dashboard/index.html", "text/html; charset=utf-8"),
    asset!("dashboard/app.js", "text/javascript; charset=utf-8"),
    asset!("dashboard/delta.js", "text/javascript; charset=utf-8"),
    asset!("dashboard/app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!(
        "vendor/uplot/uPlot.iife.min.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
];

/// The content type and bytes of the file at `path` (relative to `assets/`), if embedded.
pub fn get(path: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|a| a.path == path)
        .map(|a| (a.content_type, a.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_links_is_embedded() {
        let (_, html) = get("dashboard/index.html").unwrap();
        let html = std::str::from_utf8(html).unwrap();
        for link in html.split(['"', '\'']).filter(|s| s.starts_with('/')) {
            let path = link.strip_prefix("/assets/").unwrap_or(&link[1..]);
            assert!(get(path).is_some(), "{link} is linked but not embedded");
        }
        assert!(get("dashboard/missing.js").is_none());
    }
}
