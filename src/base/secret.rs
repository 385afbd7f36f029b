//! A setting that must never be printed (a token, a password, a consumer secret).
//!
//! It lives beneath the components that hold one (the SSI stream, ingest, the REST guard) so
//! that they need not import `config`, which only builds them.

/// A secret value: `Debug` shows `***` (or `""` when unset), and the value is reached only
/// through [`Secret::expose`], at the one place that sends it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when unset.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

/// A URL fit to be shown (in `/health`, a log line, an error): its password, in the user
/// part or as a `password` query parameter (PostgreSQL takes `?password=`), is replaced by
/// `***`; a URL that cannot be parsed is not shown at all. A URL without a password is shown as
/// given.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url.trim()) else {
        return "(unparseable)".into();
    };
    let in_query = u
        .query_pairs()
        .any(|(k, _)| k.eq_ignore_ascii_case("password"));
    if u.password().is_none() && !in_query {
        // Shown as given (not re-serialised).
        return url.to_string();
    }
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if in_query {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        assert_eq!(format!("{:?}", Secret::from("hunter2".to_string())), "***");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        assert_eq!(Secret::from("x".to_string()).expose(), "x");
    }

    #[test]
    fn urls_are_shown_without_their_passwords() {
        assert_eq!(
            redact_url("redis://user:secret@h:1/0"),
            "redis://user:***@h:1/0"
        );
        assert_eq!(
            redact_url("postgres://u@db/app?sslmode=require&password=hunter2"),
            "postgres://u@db/app?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgres://u:pw@db/app?PASSWORD=x"),
            "postgres://u:***@db/app?PASSWORD=***"
        );
        assert_eq!(
            redact_url("sqlite://data/h.sqlite3?mode=rwc"),
            "sqlite://data/h.sqlite3?mode=rwc"
        );
        assert_eq!(redact_url("postgres//u:hunter2@db"), "(unparseable)");
    }
}
