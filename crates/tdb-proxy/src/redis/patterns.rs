//! Pattern subscriptions. A tenant's ACL user may PSUBSCRIBE only to its whole prefix
//! (redis-server compares a pattern with the user's channel rules literally), so the proxy
//! subscribes the server connection to `<prefix>*` once, keeps the client's own patterns
//! itself, confirms them as redis-server would, and turns each message the server delivers for
//! `<prefix>*` into one `pmessage` per client pattern that matches the channel (Redis's glob
//! rules), as redis-server does for a client with several patterns. The subscription counts the
//! server reports for channels are corrected to count the client's patterns instead.
//!
//! Every PSUBSCRIBE or PUNSUBSCRIBE of the client sends the server one command on `<prefix>*`
//! (PSUBSCRIBE again while the client keeps any pattern, which changes nothing there), so the
//! server's confirmation marks the place where the client's own confirmations go, after
//! whatever the server confirms before it.

use bytes::Bytes;
use tdb_core::keyrules::glob_match;
use tdb_resp::frame::Frame;
use tdb_resp::prefix::Prefix;

/// The client's patterns, and whether the server connection holds `<prefix>*`.
#[derive(Debug, Default)]
pub struct Patterns {
    client: Vec<Bytes>,
    server_on: bool,
    /// The connection's channel subscriptions, as the server last counted them.
    channels: i64,
    /// The client's confirmations, each batch sent when the server confirms the command that
    /// was sent with it.
    waiting: std::collections::VecDeque<Vec<Frame>>,
}

impl Patterns {
    fn count(&self) -> i64 {
        self.channels + i64::try_from(self.client.len()).unwrap_or(i64::MAX)
    }

    /// `PSUBSCRIBE patterns...` of the client: the command to send the server.
    pub fn subscribe(&mut self, patterns: &[Bytes], prefix: &Prefix, resp3: bool) -> Vec<Bytes> {
        let mut confirmations = Vec::new();
        for pattern in patterns {
            if !self.client.contains(pattern) {
                self.client.push(pattern.clone());
            }
            let anchored = prefix.pattern(pattern);
            confirmations.push(confirmation(
                b"psubscribe",
                Some(anchored),
                self.count(),
                resp3,
            ));
        }
        self.waiting.push_back(confirmations);
        self.server_on = !self.client.is_empty();
        self.server_command(prefix)
    }

    /// PSUBSCRIBE `<prefix>*` while the client has a pattern, PUNSUBSCRIBE once it has none.
    fn server_command(&self, prefix: &Prefix) -> Vec<Bytes> {
        let verb: &'static [u8] = if self.server_on {
            b"PSUBSCRIBE"
        } else {
            b"PUNSUBSCRIBE"
        };
        vec![Bytes::from_static(verb), prefix.match_all()]
    }

    /// `PUNSUBSCRIBE [patterns...]` of the client (none: every pattern): the command to send.
    pub fn unsubscribe(&mut self, patterns: &[Bytes], prefix: &Prefix, resp3: bool) -> Vec<Bytes> {
        let named: Vec<Bytes> = if patterns.is_empty() {
            self.client.clone()
        } else {
            patterns.to_vec()
        };
        let mut confirmations = Vec::new();
        for pattern in &named {
            self.client.retain(|p| p != pattern);
            let anchored = prefix.pattern(pattern);
            confirmations.push(confirmation(
                b"punsubscribe",
                Some(anchored),
                self.count(),
                resp3,
            ));
        }
        if named.is_empty() {
            confirmations.push(confirmation(b"punsubscribe", None, self.count(), resp3));
        }
        self.waiting.push_back(confirmations);
        self.server_on = !self.client.is_empty();
        self.server_command(prefix)
    }

    /// A pub/sub frame from the server, made the client's: messages for `<prefix>*` fanned out
    /// to the client's matching patterns, confirmations of `<prefix>*` dropped, channel counts
    /// corrected. Prefixes are still on; the caller strips them.
    pub fn server_frame(&mut self, frame: Frame, prefix: &Prefix) -> Vec<Frame> {
        let push = matches!(frame, Frame::Push(_));
        let Some(items) = frame.as_items() else {
            return vec![frame];
        };
        let kind = items
            .first()
            .and_then(Frame::as_bytes)
            .map(|k| k.to_ascii_lowercase());
        let ours = items.get(1).and_then(Frame::as_bytes) == Some(&prefix.match_all());
        match kind.as_deref() {
            Some(b"psubscribe" | b"punsubscribe") if ours => {
                if let Some(Frame::Integer(n)) = items.get(2) {
                    self.channels = n - i64::from(self.server_on);
                }
                self.waiting.pop_front().unwrap_or_default()
            }
            Some(b"pmessage") if ours => self.fan_out(items, prefix, push),
            Some(b"subscribe" | b"unsubscribe") => {
                let mut items = items.to_vec();
                if let Some(Frame::Integer(n)) = items.get(2) {
                    self.channels = n - i64::from(self.server_on);
                    items[2] = Frame::Integer(self.count());
                }
                vec![wrap(items, push)]
            }
            _ => vec![frame],
        }
    }

    fn fan_out(&self, items: &[Frame], prefix: &Prefix, push: bool) -> Vec<Frame> {
        let (Some(channel), Some(message)) = (items.get(2), items.get(3)) else {
            return vec![];
        };
        let Some(name) = channel.as_bytes().and_then(|c| prefix.strip(c)) else {
            return vec![];
        };
        self.client
            .iter()
            .filter(|p| glob_match(p, &name))
            .map(|p| {
                let anchored = Frame::Bulk(prefix.pattern(p));
                let items = vec![items[0].clone(), anchored, channel.clone(), message.clone()];
                wrap(items, push)
            })
            .collect()
    }
}

/// A confirmation with the client's pattern anchored, as the server would have sent it (the
/// usual pub/sub rewrite takes the prefix off again).
fn confirmation(kind: &'static [u8], pattern: Option<Bytes>, count: i64, resp3: bool) -> Frame {
    let name = pattern.map_or(Frame::NullBulk, Frame::Bulk);
    wrap(
        vec![
            Frame::Bulk(Bytes::from_static(kind)),
            name,
            Frame::Integer(count),
        ],
        resp3,
    )
}

fn wrap(items: Vec<Frame>, push: bool) -> Frame {
    if push {
        Frame::Push(items)
    } else {
        Frame::Array(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix() -> Prefix {
        Prefix::new("t1:").expect("non-empty")
    }

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn bulk(text: &str) -> Frame {
        Frame::Bulk(b(text))
    }

    /// The server's confirmation of the command sent on `t1:*`.
    fn confirmed(kind: &str, count: i64, push: bool) -> Frame {
        wrap(vec![bulk(kind), bulk("t1:*"), Frame::Integer(count)], push)
    }

    #[test]
    fn confirmations_wait_for_the_servers() {
        let mut p = Patterns::default();
        let sent = p.subscribe(&[b("news.*"), b("a?")], &prefix(), false);
        assert_eq!(sent, [b("PSUBSCRIBE"), b("t1:*")]);
        assert_eq!(
            p.server_frame(confirmed("psubscribe", 1, false), &prefix()),
            [
                Frame::Array(vec![
                    bulk("psubscribe"),
                    bulk("t1:news.*"),
                    Frame::Integer(1)
                ]),
                Frame::Array(vec![bulk("psubscribe"), bulk("t1:a?"), Frame::Integer(2)]),
            ]
        );
        // One pattern left: the server keeps `t1:*` (PSUBSCRIBE again marks the place).
        let sent = p.unsubscribe(&[b("a?")], &prefix(), false);
        assert_eq!(sent, [b("PSUBSCRIBE"), b("t1:*")]);
        let all = p.unsubscribe(&[], &prefix(), true);
        assert_eq!(all, [b("PUNSUBSCRIBE"), b("t1:*")]);
        assert_eq!(
            p.server_frame(confirmed("psubscribe", 1, false), &prefix()),
            [Frame::Array(vec![
                bulk("punsubscribe"),
                bulk("t1:a?"),
                Frame::Integer(1)
            ])]
        );
        assert_eq!(
            p.server_frame(confirmed("punsubscribe", 0, true), &prefix()),
            [Frame::Push(vec![
                bulk("punsubscribe"),
                bulk("t1:news.*"),
                Frame::Integer(0)
            ])]
        );
        p.unsubscribe(&[], &prefix(), false);
        assert_eq!(
            p.server_frame(confirmed("punsubscribe", 0, false), &prefix()),
            [Frame::Array(vec![
                bulk("punsubscribe"),
                Frame::NullBulk,
                Frame::Integer(0)
            ])]
        );
    }

    #[test]
    fn messages_fan_out_to_matching_patterns_and_counts_are_the_clients() {
        let mut p = Patterns::default();
        p.subscribe(&[b("news.*"), b("*"), b("sport")], &prefix(), false);
        p.server_frame(confirmed("psubscribe", 1, false), &prefix());
        let message = Frame::Array(vec![
            bulk("pmessage"),
            bulk("t1:*"),
            bulk("t1:news.eu"),
            bulk("hi"),
        ]);
        assert_eq!(
            p.server_frame(message, &prefix()),
            [
                Frame::Array(vec![
                    bulk("pmessage"),
                    bulk("t1:news.*"),
                    bulk("t1:news.eu"),
                    bulk("hi")
                ]),
                Frame::Array(vec![
                    bulk("pmessage"),
                    bulk("t1:*"),
                    bulk("t1:news.eu"),
                    bulk("hi")
                ]),
            ]
        );
        // The server counts one pattern and one channel; the client has three patterns.
        let channel = Frame::Push(vec![bulk("subscribe"), bulk("t1:c"), Frame::Integer(2)]);
        assert_eq!(
            p.server_frame(channel, &prefix()),
            [Frame::Push(vec![
                bulk("subscribe"),
                bulk("t1:c"),
                Frame::Integer(4)
            ])]
        );
    }
}
