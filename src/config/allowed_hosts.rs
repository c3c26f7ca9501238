//! `allowed_hosts`: the names a gateway answers for in `Host`.

/// The hosts a gateway answers for (`allowed_hosts`): the checked `Host`
/// of every request must be one of them, so that no other name reaches the
/// upstream as `X-Forwarded-Host` (which a Rails upstream trusts from its
/// proxy for `request.host` and the links it writes). Empty: any host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    /// Lower case; `.example.com` for `*.example.com` (any subdomain).
    names: Vec<String>,
}

impl AllowedHosts {
    /// From the configured entries: names (`tfe.example.com`), IP
    /// addresses, or `*.example.com`; `Err` names the entry that is none.
    pub fn parse<'e>(entries: impl IntoIterator<Item = &'e str>) -> Result<AllowedHosts, String> {
        let mut names = Vec::new();
        for entry in entries {
            let (wildcard, name) = match entry.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, entry),
            };
            let has_port = match name.strip_prefix('[') {
                Some(_) => !name.ends_with(']'),
                None => name.contains(':'),
            };
            if has_port || !is_host_name(name) {
                return Err(entry.to_owned());
            }
            let name = name.to_ascii_lowercase();
            names.push(if wildcard { format!(".{name}") } else { name });
        }
        Ok(AllowedHosts { names })
    }

    /// True when every host is allowed (nothing configured).
    pub fn is_any(&self) -> bool {
        self.names.is_empty()
    }

    /// True when `host` (`name[:port]`, checked) is allowed; the port is
    /// not compared.
    pub fn allows(&self, host: &str) -> bool {
        if self.names.is_empty() {
            return true;
        }
        let name = match host.strip_prefix('[') {
            Some(_) => host.split_inclusive(']').next().unwrap_or(host),
            None => host.split(':').next().unwrap_or(host),
        };
        self.names.iter().any(|allowed| {
            if allowed.starts_with('.') {
                name.len() > allowed.len()
                    && name.as_bytes()[name.len() - allowed.len()..]
                        .eq_ignore_ascii_case(allowed.as_bytes())
            } else {
                name.eq_ignore_ascii_case(allowed)
            }
        })
    }
}

/// A DNS name (dot-separated labels of letters, digits, `-` and `_`), an
/// IPv4 address, or a bracketed IPv6 address.
fn is_host_name(text: &str) -> bool {
    if let Some(v6) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_compare_names_without_ports_and_wildcards_only_subdomains() {
        let any = AllowedHosts::default();
        assert!(any.allows("evil.example"));
        let allowed =
            AllowedHosts::parse(["TFE.example.com", "*.corp.test", "10.0.0.1", "[::1]"]).unwrap();
        for host in [
            "tfe.example.com",
            "tfe.EXAMPLE.com:8443",
            "a.corp.test",
            "a.b.corp.test:1",
            "10.0.0.1:80",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(allowed.allows(host), "{host}");
        }
        for host in [
            "evil.example",
            "example.com",
            "tfe.example.com.evil.test",
            "corp.test",
            "xcorp.test",
            "10.0.0.2",
            "[::2]",
        ] {
            assert!(!allowed.allows(host), "{host}");
        }
        for bad in ["", "*.", "a b", "tfe.example.com:443", "*"] {
            assert_eq!(AllowedHosts::parse([bad]), Err(bad.to_owned()), "{bad:?}");
        }
    }
}
