//! A folder's listing page, and the page a browser gets for a path that names nothing. Safe:
//! names HTML-escaped, links percent-encoded, dotfiles and `sites-versions/` left out. Each row
//! has the name, the size, the modification time and, inside a mount, whether the file waits to
//! go up (a folder: how many of its files do); a link to the parent folder comes first.

use std::path::Path;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// Everything but unreserved characters is encoded in a link.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'\'')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b']')
    .add(b'+')
    .add(b',');

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `rel`'s segments as a link path (`/a/b%20c`), empty for the top.
fn link_path(rel: &str) -> String {
    rel.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| format!("/{}", utf8_percent_encode(s, SEGMENT)))
        .collect()
}

/// A size as people read it: bytes up to 1 KiB, then KiB, MiB (one decimal below 10).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match value < 10.0 {
        true => format!("{value:.1} {}", UNITS[unit]),
        false => format!("{value:.0} {}", UNITS[unit]),
    }
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}\
h1{font-size:1.3rem;word-break:break-all}\
p.summary{color:#555}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e4e4e4}\
th{font-weight:600;color:#555;font-size:.85rem}\
td.size,th.size{text-align:right;white-space:nowrap}\
td.modified{white-space:nowrap;color:#555}\
td.sync{white-space:nowrap}\
.waiting{color:#8a5a00;font-weight:600}\
a{color:#0645ad;text-decoration:none}a:hover{text-decoration:underline}\
tr.folder td.name a{font-weight:600}";

/// One row of a listing.
struct Row {
    name: String,
    is_dir: bool,
    size: u64,
    modified: Option<chrono::DateTime<chrono::Local>>,
}

/// The listing of `dir` (the mirror folder at `rel`). `waiting`: inside a mount, the paths of
/// the files that wait to go up (the engine's); None when nothing pushes (standalone).
pub fn render(dir: &Path, rel: &str, waiting: Option<&[String]>) -> std::io::Result<String> {
    let mut rows: Vec<Row> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let meta = e.metadata().ok()?;
            Some(Row {
                name,
                is_dir: meta.is_dir(),
                size: meta.len(),
                modified: meta.modified().ok().map(chrono::DateTime::from),
            })
        })
        .filter(|r| {
            !(r.name.starts_with('.') || (rel.is_empty() && r.name == crate::cache::VERSIONS_DIR))
        })
        .collect();
    // Folders first, then files, each by name.
    rows.sort_by(|a, b| (!a.is_dir, &a.name).cmp(&(!b.is_dir, &b.name)));
    let base = link_path(rel);
    let prefix = match rel.trim_matches('/') {
        "" => String::new(),
        r => format!("{r}/"),
    };
    let title = escape(&format!("/{rel}"));
    let mut html = format!(
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content=\"width=device-width\"><title>{title}</title><style>{STYLE}</style>\n<h1>{title}</h1>\n"
    );
    let files = rows.iter().filter(|r| !r.is_dir).count();
    let folders = rows.len() - files;
    let mut summary = format!(
        "{folders} folder{}, {files} file{}",
        if folders == 1 { "" } else { "s" },
        if files == 1 { "" } else { "s" }
    );
    if let Some(waiting) = waiting {
        let here = waiting.iter().filter(|p| p.starts_with(&prefix)).count();
        summary.push_str(&match here {
            0 => "; everything here is on the platform".to_string(),
            n => format!(
                "; <span class=waiting>{n} file{} waiting to go up</span>",
                if n == 1 { "" } else { "s" }
            ),
        });
    }
    html.push_str(&format!("<p class=summary>{summary}</p>\n"));
    html.push_str("<table><thead><tr><th class=name>Name</th><th class=size>Size</th><th class=modified>Modified</th><th class=sync>Sync</th></tr></thead><tbody>\n");
    if !rel.trim_matches('/').is_empty() {
        let parent = match rel.trim_matches('/').rsplit_once('/') {
            Some((up, _)) => format!("{}/", link_path(up)),
            None => "/".to_string(),
        };
        html.push_str(&format!(
            "<tr class=parent><td class=name><a href=\"{parent}\" rel=up>../</a> (parent folder)</td><td class=size></td><td class=modified></td><td class=sync></td></tr>\n"
        ));
    }
    for row in rows {
        let slash = if row.is_dir { "/" } else { "" };
        let path = format!("{prefix}{}", row.name);
        let sync = match waiting {
            None => String::new(),
            Some(waiting) if row.is_dir => {
                let inside = format!("{path}/");
                match waiting.iter().filter(|p| p.starts_with(&inside)).count() {
                    0 => String::new(),
                    n => format!(
                        "<span class=waiting>{n} file{} waiting to go up</span>",
                        if n == 1 { "" } else { "s" }
                    ),
                }
            }
            Some(waiting) => match waiting.binary_search(&path) {
                Ok(_) => "<span class=waiting>waiting to go up</span>".to_string(),
                Err(_) => String::new(),
            },
        };
        let size = match row.is_dir {
            true => String::new(),
            false => format!(
                "<span title=\"{} bytes\">{}</span>",
                row.size,
                human_size(row.size)
            ),
        };
        let modified = row
            .modified
            .map(|t| {
                format!(
                    "<time datetime=\"{}\">{}</time>",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
                    t.format("%Y-%m-%d %H:%M")
                )
            })
            .unwrap_or_default();
        html.push_str(&format!(
            "<tr class={}><td class=name><a href=\"{base}/{}{slash}\">{}{slash}</a></td><td class=size>{size}</td><td class=modified>{modified}</td><td class=sync>{sync}</td></tr>\n",
            if row.is_dir { "folder" } else { "file" },
            utf8_percent_encode(&row.name, SEGMENT),
            escape(&row.name)
        ));
    }
    html.push_str("</tbody></table>\n");
    Ok(html)
}

/// The page a browser gets for a path that names nothing here: what was asked, and links up to
/// the nearest folder and to the top.
pub fn not_found_page(request_path: &str) -> String {
    let shown = escape(request_path);
    let trimmed = request_path.trim_end_matches('/');
    let up = match trimmed.rsplit_once('/') {
        Some((up, _)) if !up.is_empty() => format!("{up}/"),
        _ => "/".to_string(),
    };
    // The request's path is already percent-encoded: only quotes and markup need escaping.
    let up = escape(&up);
    format!(
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content=\"width=device-width\"><title>Not found: {shown}</title><style>{STYLE}</style>\n<h1>Not found</h1>\n<p class=summary>Nothing here is called <code>{shown}</code>: no file, no folder, and no site of that name anywhere in the mirror.</p>\n<p><a href=\"{up}\" rel=up>Up one folder</a> · <a href=\"/\">All files</a></p>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(20 * 1024 * 1024), "20 MiB");
    }

    #[test]
    fn the_not_found_page_escapes_what_was_asked() {
        let page = not_found_page("/a/<b>\"x");
        assert!(
            page.contains("&lt;b&gt;&quot;x") && !page.contains("<b>"),
            "{page}"
        );
        assert!(page.contains("href=\"/a/\""), "{page}");
    }
}
