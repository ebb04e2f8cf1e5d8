//! Reading `COMMAND` / `COMMAND INFO` entries. Each entry is `[name, arity, flags, first,
//! last, step, acl categories, tips, key specs, subcommands]`; key specs are maps in RESP3 and
//! flat `[field, value, ...]` arrays in RESP2, and both are accepted.

use super::error::LoadError;
use super::flags::{AclCategory, CommandFlag, KeySpecFlag};
use super::keyspec::{BeginSearch, FindKeys, KeySpec, LegacyRange};
use super::table::Command;
use crate::frame::Frame;

pub(super) fn command(entry: &Frame) -> Result<Command, LoadError> {
    let items = list(entry, "command entry")?;
    let [name, arity, flags, first, last, step, acl, rest @ ..] = items else {
        return Err(LoadError(
            "a command entry has fewer than 7 elements".into(),
        ));
    };
    let name = text(name, "command name")?.to_ascii_lowercase();
    let context = |what: &str| format!("{what} of '{name}'");
    let optional = |at: usize| {
        rest.get(at)
            .map_or(Ok(&[][..]), |f| list(f, &context("list")))
    };
    let subcommands = optional(2)?
        .iter()
        .map(command)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Command {
        arity: int(arity, &context("arity"))?,
        flags: words(flags, &context("flags"), CommandFlag::parse)?,
        legacy: LegacyRange {
            first: int(first, &context("first key"))?,
            last: int(last, &context("last key"))?,
            step: int(step, &context("key step"))?,
        },
        acl_categories: words(acl, &context("ACL categories"), AclCategory::parse)?,
        tips: optional(0)?
            .iter()
            .map(|t| text(t, &context("tip")).map(str::to_owned))
            .collect::<Result<_, _>>()?,
        key_specs: optional(1)?
            .iter()
            .map(|s| {
                key_spec(s).map_err(|e| LoadError(format!("{} in {}", e.0, context("key spec"))))
            })
            .collect::<Result<_, _>>()?,
        subcommands: subcommands
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect(),
        name,
    })
}

fn key_spec(frame: &Frame) -> Result<KeySpec, LoadError> {
    let spec = fields(frame)?;
    let notes = match get(&spec, "notes") {
        Some(notes) => Some(text(notes, "notes")?.to_owned()),
        None => None,
    };
    Ok(KeySpec {
        flags: words(
            require(&spec, "flags")?,
            "key spec flags",
            KeySpecFlag::parse,
        )?,
        begin_search: begin_search(require(&spec, "begin_search")?)?,
        find_keys: find_keys(require(&spec, "find_keys")?)?,
        notes,
    })
}

fn begin_search(frame: &Frame) -> Result<BeginSearch, LoadError> {
    let search = fields(frame)?;
    let spec = fields(require(&search, "spec")?)?;
    Ok(
        match text(require(&search, "type")?, "begin_search type")? {
            "index" => BeginSearch::Index(int(require(&spec, "index")?, "index")?),
            "keyword" => BeginSearch::Keyword {
                keyword: text(require(&spec, "keyword")?, "keyword")?.to_owned(),
                startfrom: int(require(&spec, "startfrom")?, "startfrom")?,
            },
            _ => BeginSearch::Unknown,
        },
    )
}

fn find_keys(frame: &Frame) -> Result<FindKeys, LoadError> {
    let find = fields(frame)?;
    let spec = fields(require(&find, "spec")?)?;
    // Redis 7.0 says `keystep`; the documentation says `step`.
    let step = || {
        int(
            get(&spec, "keystep")
                .or(get(&spec, "step"))
                .ok_or_else(|| missing("keystep"))?,
            "keystep",
        )
    };
    Ok(match text(require(&find, "type")?, "find_keys type")? {
        "range" => FindKeys::Range {
            lastkey: int(require(&spec, "lastkey")?, "lastkey")?,
            step: step()?,
            limit: int(require(&spec, "limit")?, "limit")?,
        },
        "keynum" => FindKeys::Keynum {
            keynumidx: int(require(&spec, "keynumidx")?, "keynumidx")?,
            firstkey: int(require(&spec, "firstkey")?, "firstkey")?,
            step: step()?,
        },
        _ => FindKeys::Unknown,
    })
}

type Fields<'a> = Vec<(&'a str, &'a Frame)>;

/// The fields of a RESP3 map or of a RESP2 flat array of names and values.
fn fields(frame: &Frame) -> Result<Fields<'_>, LoadError> {
    let pairs: Vec<(&Frame, &Frame)> = match frame {
        Frame::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        Frame::Array(items) if items.len() % 2 == 0 => {
            items.chunks_exact(2).map(|kv| (&kv[0], &kv[1])).collect()
        }
        _ => return Err(LoadError("expected a map".into())),
    };
    pairs
        .into_iter()
        .map(|(k, v)| Ok((text(k, "field name")?, v)))
        .collect()
}

fn get<'a>(fields: &Fields<'a>, name: &str) -> Option<&'a Frame> {
    fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

fn require<'a>(fields: &Fields<'a>, name: &str) -> Result<&'a Frame, LoadError> {
    get(fields, name).ok_or_else(|| missing(name))
}

fn missing(name: &str) -> LoadError {
    LoadError(format!("no '{name}' field"))
}

fn list<'a>(frame: &'a Frame, what: &str) -> Result<&'a [Frame], LoadError> {
    frame
        .as_items()
        .ok_or_else(|| LoadError(format!("{what} is not a list")))
}

fn text<'a>(frame: &'a Frame, what: &str) -> Result<&'a str, LoadError> {
    frame
        .as_bytes()
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| LoadError(format!("{what} is not text")))
}

fn int(frame: &Frame, what: &str) -> Result<i64, LoadError> {
    frame
        .as_integer()
        .ok_or_else(|| LoadError(format!("{what} is not an integer")))
}

fn words<T>(frame: &Frame, what: &str, parse: fn(&str) -> T) -> Result<Vec<T>, LoadError> {
    list(frame, what)?
        .iter()
        .map(|w| text(w, what).map(parse))
        .collect()
}
