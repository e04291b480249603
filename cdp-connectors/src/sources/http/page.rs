//! Requests of a stream's pages, and where the next page is.

use std::collections::BTreeMap;

use reqwest::Url;
use reqwest::header::HeaderMap;
use serde_json::value::RawValue;

use super::config::{HttpStreamConfig, Pagination};
use super::records::pointer_text;
use super::state::Page;

/// `template` with `{name}` replaced by the URL-encoded value of `name` in `vars`; an
/// unknown name is an error naming it.
pub(crate) fn fill(
    template: &str,
    vars: &BTreeMap<String, String>,
    encode: bool,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("`{template}`: a `{{` is not closed"));
        };
        let name = &rest[open + 1..open + close];
        let Some(value) = vars.get(name) else {
            let known: Vec<&str> = vars.keys().map(String::as_str).collect();
            return Err(format!(
                "`{template}` uses `{{{name}}}`, which this partition has no value for (it has: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        if encode {
            out.push_str(&percent_encode(value));
        } else {
            out.push_str(value);
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `value` safe inside one path segment.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The URL of a stream's first page (before parameters).
pub(crate) fn stream_url(
    base: &str,
    stream: &HttpStreamConfig,
    vars: &BTreeMap<String, String>,
) -> Result<Url, String> {
    let path = fill(&stream.path, vars, true)?;
    let joined = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    Url::parse(&joined).map_err(|e| format!("`{joined}` is not a URL: {e}"))
}

/// The URL a next-page link names: absolute, or relative to the stream's URL.
pub(crate) fn link_url(current: &Url, link: &str) -> Result<Url, String> {
    current
        .join(link)
        .map_err(|e| format!("the next-page link `{link}` is not a URL: {e}"))
}

/// What is known after a page, to find the next one.
pub(crate) struct PageSeen<'a> {
    pub(crate) body: &'a RawValue,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) url: &'a Url,
    pub(crate) records: &'a [&'a RawValue],
    /// Records read in this request series, this page's included.
    pub(crate) read: u64,
}

/// The next page, or `None` when paging stops: an empty page, no next cursor or link,
/// `has_more` false, or `total` records read.
pub(crate) fn next_page(
    stream: &HttpStreamConfig,
    current: &Page,
    seen: &PageSeen<'_>,
) -> Option<Page> {
    if seen.records.is_empty() {
        return None;
    }
    if let Some(total) = &stream.total
        && let Some(total) = pointer_text(seen.body, total).and_then(|t| t.parse::<u64>().ok())
        && seen.read >= total
    {
        return None;
    }
    match &stream.paginate {
        Pagination::None => None,
        Pagination::Cursor {
            cursor,
            last_record,
            has_more,
            ..
        } => {
            if let Some(more) = has_more
                && pointer_text(seen.body, more).as_deref() == Some("false")
            {
                return None;
            }
            let next = match (cursor, last_record) {
                (Some(at), _) => pointer_text(seen.body, at),
                (None, Some(at)) => seen.records.last().and_then(|r| pointer_text(r, at)),
                (None, None) => None,
            }?;
            // A server that hands back the cursor it was given would page forever.
            (Page::Cursor(next.clone()) != *current).then_some(Page::Cursor(next))
        }
        Pagination::NextUrl { pointer } => {
            let link = pointer_text(seen.body, pointer)?;
            let url = link_url(seen.url, &link).ok()?;
            (url != *seen.url).then(|| Page::Url(url.to_string()))
        }
        Pagination::LinkHeader => {
            let link = next_link(seen.headers)?;
            let url = link_url(seen.url, &link).ok()?;
            (url != *seen.url).then(|| Page::Url(url.to_string()))
        }
        Pagination::Offset { .. } => {
            let at = match current {
                Page::Offset(at) => *at,
                _ => 0,
            };
            Some(Page::Offset(at + seen.records.len() as u64))
        }
        Pagination::PageNumber { start, .. } => {
            let at = match current {
                Page::Number(at) => *at,
                _ => *start,
            };
            Some(Page::Number(at + 1))
        }
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288).
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let target = target.strip_prefix('<')?.strip_suffix('>')?;
            let next = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=")
                    .map(|r| r.trim_matches('"').split_whitespace().any(|r| r == "next"))
                    .unwrap_or(false)
            });
            if next {
                return Some(target.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_take_partition_and_parent_values() {
        let vars = BTreeMap::from([
            ("account".to_string(), "a/1".to_string()),
            ("parent.id".to_string(), "cus 7".to_string()),
        ]);
        assert_eq!(
            fill("/accounts/{account}/c/{parent.id}", &vars, true).unwrap(),
            "/accounts/a%2F1/c/cus%207"
        );
        let error = fill("/x/{region}", &vars, true).unwrap_err();
        assert!(error.contains("`{region}`"), "{error}");
    }

    #[test]
    fn link_headers_name_the_next_page() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "link",
            r#"<https://api.example.com/x?page=1>; rel="prev", <https://api.example.com/x?page=3>; rel="next""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://api.example.com/x?page=3")
        );
        assert_eq!(next_link(&HeaderMap::new()), None);
    }
}
