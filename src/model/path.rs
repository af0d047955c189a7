//! Broadcast paths (§6): `/`-separated, compared byte-wise once normalized.
//!
//! Every path on the wire is relative to the session root; the relay stores absolute paths
//! (`join(root, path)`) and strips the root again on the way out.

/// A path past the limits: more than [`MAX_PARTS`] parts or more bytes than allowed. On the
/// wire it is the protocol's bounds error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathTooLong;

impl std::fmt::Display for PathTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "path too long or too deep")
    }
}

impl std::error::Error for PathTooLong {}

/// Paths deeper than this fail to decode (`Path::MAX_PARTS` in the reference).
pub const MAX_PARTS: usize = 32;

/// Trims leading and trailing `/` and collapses runs of `/`: `"/room//a/"` becomes `"room/a"`.
///
/// Fails past [`MAX_PARTS`] parts or `max_len` bytes.
pub fn normalize(path: &str, max_len: usize) -> Result<String, PathTooLong> {
    let mut out = String::with_capacity(path.len().min(max_len));
    for (i, part) in path.split('/').filter(|p| !p.is_empty()).enumerate() {
        if i == MAX_PARTS {
            return Err(PathTooLong);
        }
        if i > 0 {
            out.push('/');
        }
        out.push_str(part);
        if out.len() > max_len {
            return Err(PathTooLong);
        }
    }
    Ok(out)
}

/// Whether `prefix` matches `path` on a segment boundary: `foo` matches `foo` and `foo/bar`,
/// not `foobar`. The empty prefix matches everything.
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    strip_prefix(path, prefix).is_some()
}

/// `path` relative to `prefix`: `""` when they are equal, `None` when `prefix` does not match.
/// This is how an ANNOUNCE suffix is formed.
pub fn strip_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(path);
    }
    match path.strip_prefix(prefix)? {
        "" => Some(""),
        rest => rest.strip_prefix('/'),
    }
}

/// `base/path`, or the non-empty side alone, checked against the same limits as
/// [`normalize`] because a root plus a relative path can exceed them.
pub fn join(base: &str, path: &str, max_len: usize) -> Result<String, PathTooLong> {
    let joined = match (base.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (_, true) => base.to_owned(),
        _ => format!("{base}/{path}"),
    };
    let parts = if joined.is_empty() {
        0
    } else {
        joined.split('/').count()
    };
    if parts > MAX_PARTS || joined.len() > max_len {
        return Err(PathTooLong);
    }
    Ok(joined)
}

/// The last non-empty value of `key` in an `application/x-www-form-urlencoded` query (how a
/// token rides in a URL: `?jwt=...`). `None` when a value is not UTF-8 once decoded;
/// `Some(None)` when absent.
pub fn query_param(query: &str, key: &str) -> Option<Option<String>> {
    let mut found = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(k)? == key {
            let v = form_decode(v)?;
            if !v.is_empty() {
                found = Some(v);
            }
        }
    }
    Some(found)
}

fn form_decode(s: &str) -> Option<String> {
    let plus = s.replace('+', " ");
    Some(
        percent_encoding::percent_decode(plus.as_bytes())
            .decode_utf8()
            .ok()?
            .into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize("/room//a/", 100).unwrap(), "room/a");
        assert_eq!(normalize("/room/", 100).unwrap(), "room");
        assert_eq!(normalize("", 100).unwrap(), "");
        assert_eq!(normalize("///", 100).unwrap(), "");
        assert_eq!(normalize("a/b/c", 100).unwrap(), "a/b/c");
    }

    #[test]
    fn limits_parts_and_length() {
        let deep = vec!["x"; MAX_PARTS].join("/");
        assert_eq!(normalize(&deep, 100).unwrap(), deep);
        assert_eq!(normalize(&format!("{deep}/x"), 100), Err(PathTooLong));
        // Empty segments do not count.
        assert_eq!(normalize(&format!("{deep}//"), 100).unwrap(), deep);
        assert_eq!(normalize("abcd", 4).unwrap(), "abcd");
        assert_eq!(normalize("abcde", 4), Err(PathTooLong));
        assert_eq!(normalize("//ab//cd//", 5).unwrap(), "ab/cd");
    }

    #[test]
    fn prefixes_match_on_segments() {
        assert!(has_prefix("foo", "foo"));
        assert!(has_prefix("foo/bar", "foo"));
        assert!(!has_prefix("foobar", "foo"));
        assert!(has_prefix("anything", ""));
        assert!(has_prefix("", ""));
        assert!(!has_prefix("fo", "foo"));
        assert!(!has_prefix("", "foo"));
    }

    #[test]
    fn strips() {
        assert_eq!(strip_prefix("foo", "foo"), Some(""));
        assert_eq!(strip_prefix("foo/bar/baz", "foo"), Some("bar/baz"));
        assert_eq!(strip_prefix("foo/bar", "foo/bar"), Some(""));
        assert_eq!(strip_prefix("foo/bar", ""), Some("foo/bar"));
        assert_eq!(strip_prefix("foobar", "foo"), None);
        assert_eq!(strip_prefix("bar", "foo"), None);
    }

    #[test]
    fn joins() {
        assert_eq!(join("anon", "demo", 100).unwrap(), "anon/demo");
        assert_eq!(join("", "demo", 100).unwrap(), "demo");
        assert_eq!(join("anon", "", 100).unwrap(), "anon");
        assert_eq!(join("", "", 100).unwrap(), "");
        assert_eq!(join("anon", "demo", 8), Err(PathTooLong));
        let half = vec!["x"; 16].join("/");
        assert!(join(&half, &half, 100).is_ok());
        assert_eq!(join(&half, &format!("{half}/x"), 100), Err(PathTooLong));
        // Joining and stripping are inverses (the relay's root handling).
        let full = join("anon", "demo/video", 100).unwrap();
        assert_eq!(strip_prefix(&full, "anon"), Some("demo/video"));
    }
}
