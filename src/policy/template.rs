//! Path templates of policy rules: `/api/v2/runs/{run_id}/actions/apply`.
//!
//! A template is a list of segments: a literal (matched without regard to
//! ASCII case, so `APPLY` cannot slip past a rule about `apply`), `{name}` or
//! `*` (exactly one segment), or `**` as the last segment (zero or more).
//!
//! A literal that meets the path's last segment also matches it with a
//! format extension (`apply.json`, `runs.xml`): Rails routes every path with
//! an optional `(.:format)`, so for a Rails upstream `…/actions/apply.json`
//! *is* the apply action, and a rule about `apply` must see it.

use crate::canonical::CanonicalPath;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `{name}` or `*`; the name is kept for explanations.
    One(Option<String>),
    /// `**`: the rest of the path, possibly empty.
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
}

impl PathTemplate {
    /// Parses a template; the error says what is wrong with it.
    pub fn parse(source: &str) -> Result<Self, String> {
        if !source.starts_with('/') {
            return Err(format!("`{source}` must start with `/`"));
        }
        let mut segments = Vec::new();
        let parts: Vec<&str> = if source == "/" {
            Vec::new()
        } else {
            source[1..].split('/').collect()
        };
        for (index, part) in parts.iter().enumerate() {
            let is_last = index + 1 == parts.len();
            let segment = match *part {
                "" => {
                    return Err(format!(
                        "`{source}` has an empty segment (`//` or a trailing `/`)"
                    ))
                }
                "**" if is_last => Segment::Rest,
                "**" => return Err(format!("`{source}`: `**` may only be the last segment")),
                "*" => Segment::One(None),
                "." | ".." => {
                    return Err(format!(
                        "`{source}`: `.` and `..` segments never occur in canonical paths"
                    ))
                }
                p if p.starts_with('{') && p.ends_with('}') => {
                    let name = &p[1..p.len() - 1];
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    {
                        return Err(format!(
                            "`{source}`: `{p}` needs a name of letters, digits, `_` or `-`"
                        ));
                    }
                    Segment::One(Some(name.to_owned()))
                }
                p => {
                    let valid = p.bytes().all(|b| {
                        b.is_ascii_alphanumeric()
                            || matches!(
                                b,
                                b'-' | b'.'
                                    | b'_'
                                    | b'~'
                                    | b'!'
                                    | b'$'
                                    | b'&'
                                    | b'\''
                                    | b'('
                                    | b')'
                                    | b'+'
                                    | b','
                                    | b'='
                                    | b':'
                                    | b'@'
                            )
                    });
                    if !valid {
                        return Err(format!(
                            "`{source}`: segment `{p}` may hold only unreserved characters (canonical paths decode escapes)"
                        ));
                    }
                    Segment::Literal(p.to_owned())
                }
            };
            segments.push(segment);
        }
        Ok(Self {
            source: source.to_owned(),
            segments,
        })
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// True when `path` matches this template; a path with too few or too
    /// many segments is refused before any segment is compared.
    pub fn matches_path(&self, path: &CanonicalPath) -> bool {
        let count = path.segment_count();
        let fits = match self.segments.last() {
            Some(Segment::Rest) => count + 1 >= self.segments.len(),
            _ => count == self.segments.len(),
        };
        fits && match path.noted_segments() {
            Some(segments) => self.matches(segments),
            None => self.matches(path.segments()),
        }
    }

    /// True when the canonical path's segments match this template.
    pub fn matches<'a>(&self, path: impl Iterator<Item = &'a str>) -> bool {
        let mut path = path.peekable();
        for segment in &self.segments {
            match segment {
                Segment::Rest => return true,
                Segment::One(_) => {
                    if path.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(literal) => match path.next() {
                    Some(actual) if actual.eq_ignore_ascii_case(literal) => {}
                    Some(actual)
                        if path.peek().is_none() && has_format_extension(actual, literal) => {}
                    _ => return false,
                },
            }
        }
        path.next().is_none()
    }

    /// The names of the template's `{name}` placeholders, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::One(Some(name)) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The path segments bound to the `{name}` placeholders, for a path this
    /// template matches: `/runs/{run_id}` on `/runs/run-1` is
    /// `[("run_id", "run-1")]`.
    pub fn bind<'p>(
        &self,
        path: impl Iterator<Item = &'p str>,
    ) -> impl Iterator<Item = (&str, &'p str)> {
        self.segments
            .iter()
            .zip(path)
            .filter_map(|(segment, actual)| match segment {
                Segment::One(Some(name)) => Some((name.as_str(), actual)),
                _ => None,
            })
    }

    /// True when every path this template matches is also matched by `other`
    /// (used to find rules that can never be reached).
    pub fn is_covered_by(&self, other: &PathTemplate) -> bool {
        let mut mine = self.segments.iter();
        for theirs in &other.segments {
            match (theirs, mine.next()) {
                (Segment::Rest, _) => return true,
                (_, None) | (_, Some(Segment::Rest)) => return false,
                (Segment::One(_), Some(_)) => {}
                (Segment::Literal(a), Some(Segment::Literal(b))) if a.eq_ignore_ascii_case(b) => {}
                (Segment::Literal(_), Some(_)) => return false,
            }
        }
        mine.next().is_none()
    }
}

/// True for `literal.<extension>` (ASCII case ignored), the way Rails'
/// optional `(.:format)` suffix spells a path's last segment.
fn has_format_extension(actual: &str, literal: &str) -> bool {
    let (actual, literal) = (actual.as_bytes(), literal.as_bytes());
    actual.len() > literal.len()
        && actual[literal.len()] == b'.'
        && actual[..literal.len()].eq_ignore_ascii_case(literal)
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(template: &str, path: &str) -> bool {
        let t = PathTemplate::parse(template).unwrap();
        t.matches(path[1..].split('/').filter(|s| !s.is_empty()))
    }

    #[test]
    fn the_segment_count_shortcut_agrees_with_a_full_match() {
        let templates = [
            "/",
            "/**",
            "/api/v2/**",
            "/api/v2/runs/{run_id}",
            "/api/v2/runs/{run_id}/actions/apply",
            "/api/v2/workspaces/*/vars/**",
            "/api/v2/organizations/{organization}/workspaces/{workspace_name}",
        ];
        let paths = [
            "/",
            "/api",
            "/api/v2",
            "/api/v2/ping",
            "/api/v2/runs/run-1",
            "/api/v2/runs/run-1.json",
            "/api/v2/runs/run-1/actions/apply",
            "/API/V2/Runs/run-1/actions/apply.json",
            "/api/v2/workspaces/ws-1/vars",
            "/api/v2/workspaces/ws-1/vars/var-1/x",
            "/api/v2/organizations/acme/workspaces/prod",
        ];
        for template in templates {
            let parsed = PathTemplate::parse(template).unwrap();
            for path in paths {
                let canonical = crate::canonical::canonicalize(path).unwrap();
                assert_eq!(
                    parsed.matches_path(&canonical),
                    matches(template, path),
                    "{template} on {path}"
                );
            }
        }
        assert!(PathTemplate::parse("/api/v2/**")
            .unwrap()
            .matches_path(&crate::canonical::canonicalize("/api/v2").unwrap()));
    }

    #[test]
    fn templates_match_what_they_say() {
        assert!(matches(
            "/api/v2/runs/{id}/actions/apply",
            "/api/v2/runs/run-1/actions/apply"
        ));
        assert!(matches(
            "/api/v2/runs/{id}/actions/apply",
            "/api/v2/runs/run-1/actions/APPLY"
        ));
        assert!(!matches(
            "/api/v2/runs/{id}/actions/apply",
            "/api/v2/runs/actions/apply"
        ));
        assert!(!matches(
            "/api/v2/runs/{id}/actions/apply",
            "/api/v2/runs/r/actions/apply/x"
        ));
        assert!(matches("/api/**", "/api"));
        assert!(matches("/api/**", "/api/v2/x/y"));
        assert!(!matches("/api/**", "/apix"));
        assert!(matches("/**", "/"));
        assert!(matches("/", "/"));
        assert!(!matches("/", "/a"));
        assert!(matches("/a/*/c", "/a/b/c"));
    }

    #[test]
    fn a_last_literal_matches_with_a_format_extension() {
        let apply = "/api/v2/runs/{id}/actions/apply";
        assert!(matches(apply, "/api/v2/runs/r/actions/apply.json"));
        assert!(matches(apply, "/api/v2/runs/r/actions/APPLY.xml"));
        assert!(!matches(apply, "/api/v2/runs/r/actions/applyx"));
        assert!(!matches(apply, "/api/v2/runs/r/actions.json/apply"));
        assert!(!matches("/api/v2/runs", "/api/v2/runs.json/x"));
        assert!(matches("/api/v2/runs/**", "/api/v2/runs.json"));
        assert!(matches("/api/v2/runs", "/api/v2/runs.json"));
    }

    #[test]
    fn bad_templates_are_refused_with_a_reason() {
        for bad in [
            "api", "/a//b", "/a/", "/**/x", "/a/{}", "/a/{x y}", "/a/%61", "/a/..", "/a/b;c",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn coverage_between_templates() {
        let t = |s| PathTemplate::parse(s).unwrap();
        assert!(t("/api/v2/runs").is_covered_by(&t("/api/**")));
        assert!(t("/api/v2/runs/{id}").is_covered_by(&t("/api/v2/runs/*")));
        assert!(!t("/api/v2/runs/*").is_covered_by(&t("/api/v2/runs/x")));
        assert!(!t("/api/**").is_covered_by(&t("/api/v2/**")));
        assert!(t("/api/v2/**").is_covered_by(&t("/api/**")));
        assert!(!t("/api").is_covered_by(&t("/api/*")));
    }
}
