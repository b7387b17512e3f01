//! A folder's plain, safe listing: names HTML-escaped, links percent-encoded, dotfiles and
//! `sites-versions/` left out.

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

pub fn render(dir: &Path, rel: &str) -> std::io::Result<String> {
    let mut names: Vec<(String, bool)> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let is_dir = e.file_type().ok()?.is_dir();
            Some((name, is_dir))
        })
        .filter(|(n, _)| {
            !(n.starts_with('.') || (rel.is_empty() && n == crate::cache::VERSIONS_DIR))
        })
        .collect();
    names.sort();
    let base: String = rel
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| format!("/{}", utf8_percent_encode(s, SEGMENT)))
        .collect();
    let title = escape(&format!("/{rel}"));
    let mut html =
        format!("<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}</h1><ul>\n");
    for (name, is_dir) in names {
        let slash = if is_dir { "/" } else { "" };
        html.push_str(&format!(
            "<li><a href=\"{base}/{}{slash}\">{}{slash}</a></li>\n",
            utf8_percent_encode(&name, SEGMENT),
            escape(&name)
        ));
    }
    html.push_str("</ul>\n");
    Ok(html)
}
