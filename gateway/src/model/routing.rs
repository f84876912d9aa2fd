//! Patterns and the routing table: (leistung, destination) → targets.
//!
//! A pattern is an exact value, a prefix ending in `*`, or `*`. Among matching
//! routes the most specific wins: first by Leistung, then by destination
//! (exact beats any prefix, a longer prefix beats a shorter one).

/// What a target receives inside its envelope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// The parts as the portal sent them: data and attachments.
    #[default]
    Raw,
    /// One xdomea 3.0.0 `Geschaeftsgang.Geschaeftsgang.0201` package (zip) with
    /// the data and every attachment as primary documents (`core::xdomea`).
    Xdomea,
}

/// An exact value, a prefix ending in `*`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty pattern".into());
        }
        match s.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => {
                Err(format!("{s:?}: `*` is allowed only at the end"))
            }
            Some(prefix) => Ok(Pattern::Prefix(prefix.to_owned())),
            None if s.contains('*') => Err(format!("{s:?}: `*` is allowed only at the end")),
            None => Ok(Pattern::Exact(s.to_owned())),
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(e) => e == value,
            Pattern::Prefix(p) => value.starts_with(p.as_str()),
        }
    }

    /// Higher is more specific.
    fn specificity(&self) -> usize {
        match self {
            Pattern::Exact(_) => usize::MAX,
            Pattern::Prefix(p) => p.len(),
        }
    }
}

/// Any of several patterns.
#[derive(Debug, Clone)]
pub struct PatternSet(pub Vec<Pattern>);

impl PatternSet {
    pub fn matches(&self, value: &str) -> bool {
        self.0.iter().any(|p| p.matches(value))
    }
}

#[derive(Debug, Clone)]
struct Route {
    leistung: Pattern,
    destination: Pattern,
    targets: Vec<String>,
}

/// The routing table.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn add(&mut self, leistung: Pattern, destination: Pattern, targets: Vec<String>) {
        self.routes.push(Route {
            leistung,
            destination,
            targets,
        });
    }

    /// Whether any route could take submissions for `leistung` (some destination).
    pub fn serves_leistung(&self, leistung: &str) -> bool {
        self.routes.iter().any(|r| r.leistung.matches(leistung))
    }

    /// The targets of the most specific matching route, or `None` if no route matches.
    pub fn route(&self, leistung: &str, destination: &str) -> Option<&[String]> {
        self.routes
            .iter()
            .filter(|r| r.leistung.matches(leistung) && r.destination.matches(destination))
            .max_by_key(|r| (r.leistung.specificity(), r.destination.specificity()))
            .map(|r| r.targets.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn most_specific_route_wins() {
        let mut r = Router::default();
        r.add(p("*"), p("*"), vec!["catch-all".into()]);
        r.add(p("99050012104000"), p("*"), vec!["hund".into()]);
        r.add(p("99050012104000"), p("05*"), vec!["hund-nrw".into()]);
        r.add(
            p("99050012104000"),
            p("05315000"),
            vec!["hund-koeln".into()],
        );
        r.add(p("9905*"), p("05315000"), vec!["prefix".into()]);
        assert_eq!(
            r.route("99050012104000", "05315000").unwrap(),
            ["hund-koeln"]
        );
        assert_eq!(r.route("99050012104000", "05111000").unwrap(), ["hund-nrw"]);
        assert_eq!(r.route("99050012104000", "09162000").unwrap(), ["hund"]);
        assert_eq!(r.route("99059999999999", "05315000").unwrap(), ["prefix"]);
        assert_eq!(r.route("11111111111111", "x").unwrap(), ["catch-all"]);
    }

    #[test]
    fn no_route() {
        let mut r = Router::default();
        r.add(p("99050012104000"), p("05*"), vec!["t".into()]);
        assert!(r.route("99050012104000", "09162000").is_none());
    }

    #[test]
    fn bad_patterns() {
        assert!(Pattern::parse("a*b").is_err());
        assert!(Pattern::parse("**").is_err());
        assert!(Pattern::parse("").is_err());
    }
}
