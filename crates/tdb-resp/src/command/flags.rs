//! The words `COMMAND INFO` uses for command flags, ACL categories and key spec flags, as
//! enums so a policy matches on them instead of comparing strings. A word this Redis version
//! does not know yet is kept as `Other`.

macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)*
            Other(String),
        }

        impl $name {
            /// Parses a word in any case (ACL categories with or without their `@`).
            pub fn parse(word: &str) -> Self {
                let word = word.strip_prefix('@').unwrap_or(word).to_ascii_lowercase();
                match word.as_str() {
                    $($text => Self::$variant,)*
                    _ => Self::Other(word),
                }
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)*
                    Self::Other(word) => word,
                }
            }
        }
    };
}

words! {
    /// A command flag (the third element of a `COMMAND INFO` entry).
    CommandFlag {
        Write = "write",
        Readonly = "readonly",
        Denyoom = "denyoom",
        Module = "module",
        Admin = "admin",
        Pubsub = "pubsub",
        Noscript = "noscript",
        Blocking = "blocking",
        Loading = "loading",
        Stale = "stale",
        SkipMonitor = "skip_monitor",
        SkipSlowlog = "skip_slowlog",
        Asking = "asking",
        Fast = "fast",
        NoAuth = "no_auth",
        MayReplicate = "may_replicate",
        NoMandatoryKeys = "no_mandatory_keys",
        NoAsyncLoading = "no_async_loading",
        NoMulti = "no_multi",
        Movablekeys = "movablekeys",
        AllowBusy = "allow_busy",
    }
}

words! {
    /// An ACL category (the seventh element), without its `@`.
    AclCategory {
        Keyspace = "keyspace",
        Read = "read",
        Write = "write",
        Set = "set",
        Sortedset = "sortedset",
        List = "list",
        Hash = "hash",
        String = "string",
        Bitmap = "bitmap",
        Hyperloglog = "hyperloglog",
        Geo = "geo",
        Stream = "stream",
        Pubsub = "pubsub",
        Admin = "admin",
        Fast = "fast",
        Slow = "slow",
        Blocking = "blocking",
        Dangerous = "dangerous",
        Connection = "connection",
        Transaction = "transaction",
        Scripting = "scripting",
    }
}

words! {
    /// A key spec flag: how the command uses the keys the spec finds.
    KeySpecFlag {
        Ro = "ro",
        Rw = "rw",
        Ow = "ow",
        Rm = "rm",
        Access = "access",
        Update = "update",
        Insert = "insert",
        Delete = "delete",
        NotKey = "not_key",
        Incomplete = "incomplete",
        VariableFlags = "variable_flags",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_parse_in_any_case_and_keep_the_unknown() {
        assert_eq!(AclCategory::parse("@sortedset"), AclCategory::Sortedset);
        assert_eq!(KeySpecFlag::parse("RW"), KeySpecFlag::Rw);
        assert_eq!(CommandFlag::parse("movablekeys"), CommandFlag::Movablekeys);
        let other = CommandFlag::parse("Future_Flag");
        assert_eq!(other, CommandFlag::Other("future_flag".into()));
        assert_eq!(other.as_str(), "future_flag");
    }
}
