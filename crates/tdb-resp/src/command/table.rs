//! The command table and the key lookup on top of it. Commands are found by name in any case,
//! container commands (`OBJECT`, `CLIENT`, `XGROUP`, ...) by their subcommand; the arity is
//! checked; keys come from the key specs, in spec order as `COMMAND GETKEYS` lists them.
//!
//! Commands whose key specs cannot place every key, on redis-server 7.0 (checked against the
//! server by `tests/command_table.rs`, which lists them through `incomplete_commands`):
//! - `SORT`, `SORT_RO`: BY/GET patterns and the STORE destination are `unknown` specs. Handled
//!   here as redis-server's `sortGetKeys` does (the key and the last STORE destination); BY and
//!   GET name keys through patterns, so with either `key_positions` refuses and the proxy must
//!   use `sort_positions` and prefix the patterns too.
//! - `MIGRATE`: the `KEYS` spec is `incomplete` (a key argument named "KEYS" is ambiguous);
//!   refused. The proxy refuses MIGRATE anyway (it moves keys to another server).
//!
//! Key specs say where keys are, not that the command's own parser agrees in every corner case;
//! the per-tenant ACL user upstream stays the backstop.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::error::{KeyError, LoadError};
use super::flags::{AclCategory, CommandFlag, KeySpecFlag};
use super::keyspec::{KeySpec, LegacyRange};
use super::load;
use super::sort;
use crate::frame::Frame;

/// Commands by name. Looked up for every request the proxy decides, so hashed with foldhash
/// rather than SipHash: the table holds only what the server listed, and a lookup inserts
/// nothing, so the names a client sends cannot crowd a bucket.
pub type Names = HashMap<String, Command, RandomState>;

/// One command (or one subcommand, named `container|sub`) as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub(super) name: String,
    pub(super) arity: i64,
    pub(super) flags: Vec<CommandFlag>,
    pub(super) legacy: LegacyRange,
    pub(super) acl_categories: Vec<AclCategory>,
    pub(super) tips: Vec<String>,
    pub(super) key_specs: Vec<KeySpec>,
    pub(super) subcommands: Names,
}

impl Command {
    /// The lower-case name; `object|encoding` for a subcommand.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The argument count including the name: exact when positive, a minimum when negative.
    pub fn arity(&self) -> i64 {
        self.arity
    }

    pub fn flags(&self) -> &[CommandFlag] {
        &self.flags
    }

    pub fn has_flag(&self, flag: &CommandFlag) -> bool {
        self.flags.contains(flag)
    }

    pub fn acl_categories(&self) -> &[AclCategory] {
        &self.acl_categories
    }

    pub fn in_category(&self, category: &AclCategory) -> bool {
        self.acl_categories.contains(category)
    }

    /// Hints for clients and proxies (`nondeterministic_output`, `request_policy:...`).
    pub fn tips(&self) -> &[String] {
        &self.tips
    }

    pub fn key_specs(&self) -> &[KeySpec] {
        &self.key_specs
    }

    pub fn legacy_range(&self) -> LegacyRange {
        self.legacy
    }

    /// The subcommands of a container command, by full name (`object|encoding`).
    pub fn subcommands(&self) -> &Names {
        &self.subcommands
    }

    /// Whether the command names keys at all (key specs, or a legacy key range).
    pub fn is_keyed(&self) -> bool {
        !self.key_specs.is_empty() || self.legacy.first > 0
    }

    /// Whether some key of this command cannot be placed from its key specs.
    pub fn keys_incomplete(&self) -> bool {
        self.key_specs.iter().any(KeySpec::is_incomplete)
            || (self.key_specs.is_empty() && self.has_flag(&CommandFlag::Movablekeys))
    }

    /// Whether a request of `argc` arguments (the name included) has this command's arity.
    pub fn accepts(&self, argc: usize) -> bool {
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }

    fn key_positions(&self, args: &[&[u8]]) -> Result<Vec<usize>, KeyError> {
        let mut out = Vec::new();
        if self.key_specs.is_empty() {
            if self.keys_incomplete() {
                return Err(KeyError::Incomplete(self.name.clone()));
            }
            self.legacy
                .positions(args.len(), &mut out)
                .ok_or_else(|| KeyError::Incomplete(self.name.clone()))?;
            return Ok(out);
        }
        if self.keys_incomplete() {
            return Err(KeyError::Incomplete(self.name.clone()));
        }
        for spec in &self.key_specs {
            spec.positions(&self.name, args, &mut out)?;
        }
        Ok(out)
    }
}

/// Every command of one redis-server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTable {
    commands: Names,
}

impl CommandTable {
    /// Builds the table from the reply to `COMMAND` (or `COMMAND INFO name...`; names the
    /// server does not know come back as nulls and are skipped).
    pub fn from_reply(reply: &Frame) -> Result<Self, LoadError> {
        let entries = reply
            .as_items()
            .ok_or_else(|| LoadError("the reply is not a list".into()))?;
        let commands = entries
            .iter()
            .filter(|e| !matches!(e, Frame::Null | Frame::NullArray | Frame::NullBulk))
            .map(|e| load::command(e).map(|c| (c.name.clone(), c)))
            .collect::<Result<_, _>>()?;
        Ok(Self { commands })
    }

    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Every top-level command, in no particular order.
    pub fn commands(&self) -> impl Iterator<Item = &Command> {
        self.commands.values()
    }

    /// A top-level command by name, in any case.
    pub fn get(&self, name: &[u8]) -> Option<&Command> {
        // Lower-cased on the stack: this runs for every request. No command's name is longer.
        let mut lower = [0u8; 64];
        let lower = lower.get_mut(..name.len())?;
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        self.commands.get(std::str::from_utf8(lower).ok()?)
    }

    /// The command a request runs: the subcommand for container commands.
    pub fn lookup<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<&Command, KeyError> {
        let name = args.first().map_or(&[][..], AsRef::as_ref);
        let command = self
            .get(name)
            .ok_or_else(|| KeyError::UnknownCommand(String::from_utf8_lossy(name).into_owned()))?;
        if command.subcommands.is_empty() {
            return Ok(command);
        }
        let sub = args.get(1).map_or(&[][..], AsRef::as_ref);
        let full = format!(
            "{}|{}",
            command.name,
            String::from_utf8_lossy(sub).to_ascii_lowercase()
        );
        command
            .subcommands
            .get(&full)
            .ok_or_else(|| KeyError::UnknownSubcommand {
                command: command.name.clone(),
                subcommand: String::from_utf8_lossy(sub).into_owned(),
            })
    }

    /// The positions in `args` (the command name is 0) of the request's key arguments, as
    /// `COMMAND GETKEYS` would list them; an empty list for a command without keys. Unknown
    /// commands, wrong arities, invalid key counts and commands whose keys the specs cannot
    /// place are errors.
    pub fn key_positions(&self, args: &[&[u8]]) -> Result<Vec<usize>, KeyError> {
        let command = self.lookup(args)?;
        if !command.accepts(args.len()) {
            return Err(KeyError::Arity(command.name.clone()));
        }
        repeated_destination(&command.name, args)?;
        if let Some(positions) = sort::key_positions(&command.name, args) {
            return positions;
        }
        command.key_positions(args)
    }

    /// The positions of the keys a write request may create or fill: those its key specs flag
    /// `insert`, `update` or `ow` (LPUSH's list, RENAME's destination, MSET's keys; not
    /// LMOVE's source, which is only read and emptied), and SORT's STORE destination. Empty for
    /// a command that does not write.
    pub fn written_key_positions(&self, args: &[&[u8]]) -> Result<Vec<usize>, KeyError> {
        let command = self.lookup(args)?;
        if !command.accepts(args.len()) {
            return Err(KeyError::Arity(command.name.clone()));
        }
        if !command.has_flag(&CommandFlag::Write) {
            return Ok(Vec::new());
        }
        repeated_destination(&command.name, args)?;
        if command.name == "sort" {
            return Ok(sort::sort_positions(args)
                .keys
                .into_iter()
                .skip(1)
                .collect());
        }
        let mut out = Vec::new();
        for spec in &command.key_specs {
            let fills = spec.flags.iter().any(|f| {
                matches!(
                    f,
                    KeySpecFlag::Insert | KeySpecFlag::Update | KeySpecFlag::Ow
                )
            });
            if fills && !spec.is_incomplete() {
                spec.positions(&command.name, args, &mut out)?;
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The names (subcommands as `container|sub`) of every command whose key specs cannot
    /// place all its keys, sorted.
    pub fn incomplete_commands(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .commands
            .values()
            .flat_map(|c| std::iter::once(c).chain(c.subcommands.values()))
            .filter(|c| c.keys_incomplete())
            .map(Command::name)
            .collect();
        names.sort_unstable();
        names
    }
}

/// Refuses a destination option given twice. Key specs find a keyword's first occurrence, but
/// GEORADIUS/GEORADIUSBYMEMBER and SORT write (or, with no source, delete) the last one's key:
/// `GEORADIUS nokey 0 0 1 km STORE a STORE victim` would reach a key never prefixed, and
/// redis-server's own ACL check reads the key specs too. So the request is refused whole.
fn repeated_destination(command: &str, args: &[&[u8]]) -> Result<(), KeyError> {
    let options: &[&str] = match command {
        "georadius" | "georadiusbymember" => &["store", "storedist"],
        "sort" | "sort_ro" => &["store"],
        _ => return Ok(()),
    };
    let given = args
        .iter()
        .skip(2)
        .filter(|arg| {
            options
                .iter()
                .any(|o| arg.eq_ignore_ascii_case(o.as_bytes()))
        })
        .count();
    if given > 1 {
        return Err(KeyError::RepeatedDestination {
            command: command.to_string(),
            option: options.join("/").to_ascii_uppercase(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
