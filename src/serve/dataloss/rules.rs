//! A page's structured data, read the way hyper-html-api (the library hyperclayjs vendors) reads
//! it: the page's `<script data-rules-name~="api" data-rules-version="1">` holds rules, JSON
//! or its relaxed form (bare selectors and names, single quotes), and each rule picks values out
//! of the page:
//! - `"sel"`: the trimmed text of the first match (null when none); `"."`: the element's own;
//! - `"sel@prop"`, `"@prop"`: a DOM property (`textContent`, `innerHTML`, `value`, `checked`, ...)
//!   or else an attribute of the first match (or of the element itself);
//! - `"sel[]"`: the texts of every match;
//! - `["sel", rules]`: one record per match; `{key: rule}`: an object.
//!
//! Matches skip the rules tag itself and anything inside `[cms-template]` (template rows), as the
//! library does. Only reading is here: the guard compares what a save left of the data.

use scraper::{ElementRef, Html, Selector};
use serde_json::{Map, Value};

/// Rules nested deeper than this are refused (hyper-html-api's limit).
const MAX_RULE_DEPTH: usize = 20;
/// The largest rules tag read (a page's rules are a few hundred bytes).
const MAX_RULES_BYTES: usize = 64 * 1024;
/// Records read per list: bounds the work a hostile page can ask of the server.
const MAX_ROWS: usize = 10_000;

/// What the page's rules say about its data.
#[derive(Debug, Clone, PartialEq)]
pub enum Island {
    /// No `api` rules tag.
    NoRules,
    /// A rules tag that does not parse (let through, as the library does).
    BadRules,
    /// The data the rules read.
    Data(Value),
}

/// The DOM properties a rule may name; anything else is an attribute.
const PROPS: &[&str] = &[
    "textContent",
    "innerText",
    "innerHTML",
    "outerHTML",
    "value",
    "checked",
    "selected",
    "disabled",
    "readOnly",
    "type",
    "tagName",
    "nodeName",
    "id",
    "className",
    "title",
];

/// Reads the page's data island.
pub fn island(html: &str) -> Island {
    let doc = Html::parse_document(html);
    let Ok(tag_selector) = Selector::parse("script[data-rules-name~=\"api\"]") else {
        return Island::BadRules;
    };
    let Some(tag) = doc.select(&tag_selector).next() else {
        return Island::NoRules;
    };
    if tag.value().attr("data-rules-version") != Some("1") {
        return Island::BadRules;
    }
    let text: String = tag.text().collect();
    if text.len() > MAX_RULES_BYTES {
        return Island::BadRules;
    }
    let Some(rules) = parse_rules(&text) else {
        return Island::BadRules;
    };
    let root = doc.root_element();
    match apply(root, &rules, 0) {
        Some(data) => Island::Data(data),
        None => Island::BadRules,
    }
}

/// Rules as JSON, or relaxed: bare words and selectors become strings, single quotes are quotes.
pub fn parse_rules(text: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str(text) {
        return Some(v);
    }
    serde_json::from_str(&relaxed_to_json(text)?).ok()
}

/// Turns the relaxed form into JSON: quoted strings are kept, structure characters kept, and
/// any other run (up to `:` `,` `}` or a closing `]` that is not a selector's) becomes a string.
fn relaxed_to_json(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' | '}' | ',' | ':' => {
                out.push(c);
                i += 1;
            }
            '[' => {
                out.push('[');
                i += 1;
            }
            ']' => {
                out.push(']');
                i += 1;
            }
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        s.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    s.push(chars[i]);
                    i += 1;
                }
                i += 1;
                out.push_str(&serde_json::to_string(&s).ok()?);
            }
            c if c.is_whitespace() => i += 1,
            _ => {
                // A bare token: brackets inside it belong to it (`li[data-x]`, `a:not(.b)`).
                let mut s = String::new();
                let mut depth = 0usize;
                while i < chars.len() {
                    let c = chars[i];
                    if depth == 0 && matches!(c, ',' | '}' | ']') {
                        break;
                    }
                    // A `:` ends a key, unless a pseudo-class follows (`li:first-child`).
                    if depth == 0 && c == ':' {
                        let next = chars.get(i + 1).copied().unwrap_or(' ');
                        if next.is_whitespace()
                            || next == '"'
                            || next == '\''
                            || next == '['
                            || next == '{'
                        {
                            break;
                        }
                    }
                    match c {
                        '[' | '(' => depth += 1,
                        ']' | ')' => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                    s.push(c);
                    i += 1;
                }
                let s = s.trim();
                match s {
                    "true" | "false" | "null" => out.push_str(s),
                    _ if s.parse::<f64>().is_ok() => out.push_str(s),
                    _ => out.push_str(&serde_json::to_string(s).ok()?),
                }
            }
        }
    }
    Some(out)
}

fn apply(el: ElementRef<'_>, rule: &Value, depth: usize) -> Option<Value> {
    if depth > MAX_RULE_DEPTH {
        return None;
    }
    Some(match rule {
        Value::String(s) => string_rule(el, s),
        Value::Array(pair) => {
            let (Some(Value::String(selector)), Some(sub)) = (pair.first(), pair.get(1)) else {
                return None;
            };
            let mut rows = Vec::new();
            for row in find(el, selector).into_iter().take(MAX_ROWS) {
                rows.push(apply(row, sub, depth + 1)?);
            }
            Value::Array(rows)
        }
        Value::Object(fields) => {
            let mut out = Map::new();
            for (key, sub) in fields {
                out.insert(key.clone(), apply(el, sub, depth + 1)?);
            }
            Value::Object(out)
        }
        _ => Value::Null,
    })
}

fn string_rule(el: ElementRef<'_>, rule: &str) -> Value {
    if let Some(selector) = rule.strip_suffix("[]") {
        return Value::Array(
            find(el, selector)
                .into_iter()
                .take(MAX_ROWS)
                .map(|e| Value::String(text(e)))
                .collect(),
        );
    }
    if let Some(prop) = rule.strip_prefix('@') {
        return read(el, prop);
    }
    if let Some(at) = split_at_prop(rule) {
        let (selector, prop) = (&rule[..at], &rule[at + 1..]);
        let target = if selector.is_empty() {
            Some(el)
        } else {
            find(el, selector).into_iter().next()
        };
        return target.map_or(Value::Null, |t| read(t, prop));
    }
    if rule == "." {
        return Value::String(text(el));
    }
    find(el, rule)
        .into_iter()
        .next()
        .map_or(Value::Null, |e| Value::String(text(e)))
}

/// Where the last `@` outside brackets and quotes is (a selector's `[href^="@"]` is not one).
fn split_at_prop(rule: &str) -> Option<usize> {
    let (mut depth, mut quote, mut found) = (0usize, None, None);
    let bytes = rule.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match (quote, c) {
            (_, b'\\') => i += 1,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b'[' | b'(') => depth += 1,
            (None, b']' | b')') => depth = depth.saturating_sub(1),
            (None, b'@') if depth == 0 => found = Some(i),
            _ => {}
        }
        i += 1;
    }
    found
}

/// The matches under `el`, without the rules tag and template rows.
fn find<'a>(el: ElementRef<'a>, selector: &str) -> Vec<ElementRef<'a>> {
    let Ok(sel) = Selector::parse(selector) else {
        return Vec::new();
    };
    el.select(&sel)
        .filter(|e| e.value().attr("data-rules-name").is_none())
        .filter(|e| {
            !std::iter::successors(Some(*e), |e| e.parent().and_then(ElementRef::wrap))
                .any(|a| a.value().attr("cms-template").is_some())
        })
        .collect()
}

fn text(el: ElementRef<'_>) -> String {
    el.text().collect::<String>().trim().to_string()
}

fn read(el: ElementRef<'_>, prop: &str) -> Value {
    let v = el.value();
    let s = match prop {
        "textContent" | "innerText" => Some(el.text().collect::<String>()),
        "innerHTML" => Some(el.inner_html()),
        "outerHTML" => Some(el.html()),
        "value" if v.name() == "textarea" => Some(el.text().collect()),
        "value" => v.attr("value").map(str::to_string),
        "checked" | "selected" | "disabled" => Some(v.attr(prop).is_some().to_string()),
        "readOnly" => Some(v.attr("readonly").is_some().to_string()),
        "tagName" | "nodeName" => Some(v.name().to_ascii_uppercase()),
        "className" => v.attr("class").map(str::to_string),
        p if PROPS.contains(&p) => v.attr(p).map(str::to_string),
        attr => {
            return v
                .attr(attr)
                .filter(|a| !a.is_empty())
                .map_or(Value::Null, |a| Value::String(a.into()))
        }
    };
    s.map_or(Value::Null, Value::String)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r##"<!DOCTYPE html><html><head>
<script type="application/json" data-rules-name="api" data-rules-version="1">
{ title: "h1", todos: ["#todos li:not(.done)", {text: ".", id: "@data-id"}], tags: ".tag[]", link: "a@href" }
</script></head><body><h1> My list </h1>
<ul id="todos"><li data-id="1">milk</li><li data-id="2">bread</li><li class="done">old</li>
<li cms-template data-id="t">template row</li></ul>
<span class="tag">a</span><span class="tag">b</span><a href="/x">x</a></body></html>"##;

    #[test]
    fn the_rules_read_the_pages_data() {
        let Island::Data(data) = island(PAGE) else {
            panic!("{:?}", island(PAGE))
        };
        assert_eq!(data["title"], "My list");
        assert_eq!(
            data["todos"],
            serde_json::json!([{"text": "milk", "id": "1"}, {"text": "bread", "id": "2"}])
        );
        assert_eq!(data["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(data["link"], "/x");
        assert_eq!(
            island("<html><body>no rules</body></html>"),
            Island::NoRules
        );
        assert_eq!(
            island(r#"<script data-rules-name="api" data-rules-version="1">{{{</script>"#),
            Island::BadRules
        );
    }
}
