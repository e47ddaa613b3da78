//! `--config FILE`: the flags' options in TOML, a table per group of
//! `--help` (its heading in lower case) and keys named as the flags are:
//!
//! ```toml
//! [limits]
//! max-frame-size = 65536
//! ```
//!
//! The file's settings become flags put before the command line's, except
//! those the command line or the environment already set, so that clap
//! checks and applies them as it does everything else. Each value is
//! checked here first, so that an error names the key and its line.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue};
use clap::{Arg, ArgAction, Command};
use toml::Spanned;

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {}: {source}", path.display())]
    Syntax {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("configuration file {}, line {line}: {key}: {reason}", path.display())]
    Key {
        path: PathBuf,
        line: usize,
        key: String,
        reason: String,
    },
}

/// The file's top level: keys and tables, each with where it stands.
type Document = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// The file's tables of settings, each key with where it stands.
type Tables = BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<toml::Value>>>;

/// The flags that stand for the file's settings, leaving out those for
/// which `set_elsewhere(id)` says the command line or environment has a
/// value.
pub fn arguments(
    command: &Command,
    path: &Path,
    set_elsewhere: impl Fn(&str) -> bool,
) -> Result<Vec<OsString>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let syntax = |source| FileError::Syntax {
        path: path.to_owned(),
        source,
    };
    // A key outside any table is told where it belongs, rather than that
    // the file's shape is wrong.
    let document: Document = toml::from_str(&text).map_err(syntax)?;
    if let Some((key, _)) = document
        .iter()
        .find(|(_, value)| !value.get_ref().is_table())
    {
        let reason = match option_named(command, key.get_ref()).and_then(table_of) {
            Some(table) => format!("a key outside any table; it belongs in [{table}]"),
            None => "a key outside any table (see stomp-relay --help)".to_owned(),
        };
        return Err(FileError::Key {
            path: path.to_owned(),
            line: line_of(&text, key.span().start),
            key: key.get_ref().clone(),
            reason,
        });
    }
    let tables: Tables = toml::from_str(&text).map_err(syntax)?;
    let mut flags = Vec::new();
    for (table, settings) in &tables {
        for (key, value) in settings {
            let refuse = |reason: String| FileError::Key {
                path: path.to_owned(),
                line: line_of(&text, key.span().start),
                key: format!("{}.{}", table.get_ref(), key.get_ref()),
                reason,
            };
            let arg = find_option(command, table.get_ref(), key.get_ref()).map_err(refuse)?;
            if set_elsewhere(arg.get_id().as_str()) {
                continue;
            }
            flags.extend(as_flags(command, arg, value.get_ref()).map_err(refuse)?);
        }
    }
    Ok(flags)
}

/// The table a group's options go in.
fn table_of(arg: &Arg) -> Option<String> {
    arg.get_help_heading().map(str::to_ascii_lowercase)
}

/// The option of the flag `--{name}` that a file may set.
fn option_named<'a>(command: &'a Command, name: &str) -> Option<&'a Arg> {
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(name) && table_of(arg).is_some())
}

/// The option `key` of `table`, or why there is none.
fn find_option<'a>(command: &'a Command, table: &str, key: &str) -> Result<&'a Arg, String> {
    let named = |name: &str| option_named(command, name);
    match named(key) {
        Some(arg) if table_of(arg).as_deref() == Some(table) => Ok(arg),
        Some(arg) => Err(format!(
            "not an option of [{table}]; it belongs in [{}]",
            table_of(arg).unwrap_or_default()
        )),
        None => match named(&key.replace('_', "-")) {
            Some(arg) => Err(format!(
                "unknown key; keys are named as the flags are: {}",
                arg.get_long().unwrap_or_default()
            )),
            None => Err("unknown key (see stomp-relay --help)".to_owned()),
        },
    }
}

/// `--key value` for each of the setting's values, each checked as clap
/// will check it.
fn as_flags(command: &Command, arg: &Arg, value: &toml::Value) -> Result<Vec<OsString>, String> {
    let flag = OsString::from(format!("--{}", arg.get_long().unwrap_or_default()));
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return match value {
            toml::Value::Boolean(true) => Ok(vec![flag]),
            toml::Value::Boolean(false) => Ok(Vec::new()),
            _ => Err("expected true or false".to_owned()),
        };
    }
    let values = match value {
        toml::Value::Array(items) if matches!(arg.get_action(), ArgAction::Append) => {
            items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?
        }
        toml::Value::Array(_) => return Err("takes one value, not a list".to_owned()),
        other => vec![scalar(other)?],
    };
    let mut flags = Vec::with_capacity(values.len() * 2);
    for value in values {
        check_value(command, &flag, &value)?;
        flags.push(flag.clone());
        flags.push(value.into());
    }
    Ok(flags)
}

/// Whether clap takes `value` for `arg`: a parse of that flag alone, whose
/// errors about anything else (other options it requires, say) are left
/// to the real parse.
fn check_value(command: &Command, flag: &OsStr, value: &str) -> Result<(), String> {
    let alone = [command.get_name().into(), flag.to_owned(), value.into()];
    let Err(error) = command.clone().try_get_matches_from(alone) else {
        return Ok(());
    };
    let about_this = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(name)) => name.split_whitespace().next() == flag.to_str(),
        _ => false,
    };
    if about_this {
        Err(clap_reason(&error))
    } else {
        Ok(())
    }
}

fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(number) => Ok(number.to_string()),
        toml::Value::Float(number) => Ok(number.to_string()),
        toml::Value::Boolean(flag) => Ok(flag.to_string()),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => {
            Err("expected a string, a number or a boolean".to_owned())
        }
    }
}

/// The first line of clap's message, without its `error: `.
fn clap_reason(error: &clap::Error) -> String {
    let message = error.to_string();
    let first = message.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// The 1-based line of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    before.bytes().filter(|&byte| byte == b'\n').count() + 1
}
