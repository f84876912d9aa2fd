//! The config file's text before it is typed: `${NAME}` replaced from the
//! environment, every syntax error found in one run, places named by line
//! and column.

use std::path::Path;

use super::ConfigError;

/// Replaces `${NAME}` with the environment variable `NAME`, and
/// `${NAME:-default}` with it or, when unset or empty, with `default` (one
/// config for several instances on one machine, each with its own ports).
/// Comment lines are left as they are: a commented-out setting naming a
/// variable does not need it set.
pub(super) fn interpolate(text: &str, file: &Path) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str(&interpolate_line(line, file)?);
        }
    }
    Ok(out)
}

fn interpolate_line(text: &str, file: &Path) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| ConfigError {
            file: file.into(),
            key: "${".into(),
            problem: "unterminated `${` in the file".into(),
            fix: "write `${NAME}` to insert the environment variable NAME, or remove the `${`"
                .into(),
        })?;
        let (name, default) = match after[..end].split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (&after[..end], None),
        };
        let value = std::env::var(name)
            .ok()
            .filter(|v| default.is_none() || !v.is_empty())
            .or_else(|| default.map(str::to_owned))
            .ok_or_else(|| ConfigError {
            file: file.into(),
            key: format!("${{{name}}}"),
            problem: format!("environment variable {name} is not set"),
            fix: format!("set {name} in the daemon's environment (e.g. an EnvironmentFile of the systemd unit), or give a default: ${{{name}:-value}}"),
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Most syntax errors reported at once.
const MAX_SYNTAX_ERRORS: usize = 10;

/// Every TOML syntax error (up to [`MAX_SYNTAX_ERRORS`]) as (place, problem): after
/// each, its line is blanked (line numbers stay) and the text is parsed again, so
/// one run names them all instead of one per `config check`.
pub(super) fn syntax_errors(text: &str) -> Vec<(String, String)> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut found = Vec::new();
    let mut blanked = std::collections::BTreeSet::new();
    while found.len() < MAX_SYNTAX_ERRORS {
        let current = lines.join("\n");
        let Err(e) = toml::Deserializer::parse(&current) else {
            break;
        };
        found.push((location(&current, e.span()), e.message().trim().to_owned()));
        let Some(span) = e.span() else { break };
        let line = current[..span.start.min(current.len())]
            .matches('\n')
            .count();
        if line >= lines.len() || !blanked.insert(line) {
            break;
        }
        lines[line].clear();
    }
    found
}

pub(super) fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            format!("line {line}, column {col}")
        }
        None => "position unknown".into(),
    }
}
