//! A submitted form (`application/x-www-form-urlencoded`), read leniently:
//! any bytes decode (invalid escapes stay as written, invalid UTF-8 is
//! replaced), a repeated field keeps its last value, and what a handler
//! needs and does not find is a message on the page, never an error
//! response of a framework.

/// The fields of one submitted form.
#[derive(Debug, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value of `name`, if the form has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name`'s value without surrounding white space; empty when absent.
    pub fn text(&self, name: &str) -> &str {
        self.get(name).map_or("", str::trim)
    }

    /// True when the form says the person confirmed (`confirmed=yes`).
    pub fn confirmed(&self) -> bool {
        self.get("confirmed") == Some("yes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_decode_and_the_last_value_wins() {
        let form = Form::parse(b"a=1&b=x+y%21&a=2&c&d=%ZZ&e=%FF");
        assert_eq!(form.get("a"), Some("2"));
        assert_eq!(form.get("b"), Some("x y!"));
        assert_eq!(form.get("c"), Some(""));
        assert_eq!(form.get("d"), Some("%ZZ"));
        assert_eq!(form.get("e"), Some("\u{fffd}"));
        assert_eq!(form.get("missing"), None);
        assert_eq!(Form::parse(b"x=+padded+").text("x"), "padded");
        assert!(Form::parse(b"confirmed=yes").confirmed());
        assert!(!Form::parse(b"confirmed=1").confirmed());
    }
}
