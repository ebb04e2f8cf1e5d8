//! Where a server's answer to a command ends, read packet by packet without holding it: the
//! relay streams rows through and needs only to know which packet is the last, what each
//! result came to (rows, an error) and whether more results follow. Sans IO: the relay feeds
//! every logical packet (pieces of a long one joined in thought, not in memory) to
//! [`Response::step`].
//!
//! Classic EOF packets only: the proxy never negotiates `CLIENT_DEPRECATE_EOF`. With MariaDB's
//! metadata caching ([`Response::caching_metadata`]) a column count carries one more byte,
//! which says whether the column definitions follow.

use super::reply::{self, Eof, status};
use super::wire::{Malformed, Reader};

/// What kind of answer a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `COM_QUERY`, `COM_STMT_EXECUTE`: results (OK, or a result set), one after another while
    /// the server says more follow; an error ends them.
    Results,
    /// `COM_STMT_PREPARE`: PREPARE_OK, parameter and column definitions.
    Prepare,
    /// `COM_FIELD_LIST`: column definitions up to an EOF.
    FieldList,
    /// `COM_STMT_FETCH`: rows up to an EOF.
    Rows,
    /// Exactly one packet (OK, ERR, EOF or text).
    One,
}

/// A packet as the relay saw it.
#[derive(Debug, Clone, Copy)]
pub enum Seen<'a> {
    /// Its whole payload.
    Whole(&'a [u8]),
    /// Too long to hold: a row or a column definition, streamed through.
    Large,
}

/// How one result, or a whole answer, came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(reply::Ok),
    Rows {
        count: u64,
        status: u16,
    },
    Err(reply::Err),
    /// A statement prepared under this id.
    Prepared {
        id: u32,
    },
    /// An answer of one packet that is neither OK nor ERR (`COM_STATISTICS`, an EOF).
    Other,
}

impl Outcome {
    /// Rows returned or affected, when the result says.
    pub fn rows(&self) -> Option<u64> {
        match self {
            Self::Ok(ok) => Some(ok.affected_rows),
            Self::Rows { count, .. } => Some(*count),
            _ => None,
        }
    }

    /// The status flags it carries.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Ok(ok) => Some(ok.status),
            Self::Rows { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What a packet was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Part of the answer; more follows.
    More,
    /// One result ended and another follows.
    Result(Outcome),
    /// The answer is complete.
    Done(Outcome),
    /// `LOCAL INFILE` request (0xfb): the server asks the client for a file. The answer goes on
    /// once the server gets a file (the proxy sends it an empty one).
    LocalInfile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    /// Definitions still to come, and what follows their EOF.
    Defs {
        left: u64,
        then: AfterDefs,
    },
    /// The EOF after definitions.
    DefsEof {
        then: AfterDefs,
    },
    Rows {
        count: u64,
    },
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterDefs {
    /// A result set's rows.
    Rows,
    /// A prepared statement's column definitions (`columns`), then done.
    Columns { id: u32, columns: u16 },
    /// The prepared statement is done.
    Prepared { id: u32 },
    /// `COM_FIELD_LIST`: the EOF ends the answer.
    Done,
}

/// The answer to one command, followed packet by packet.
#[derive(Debug, Clone)]
pub struct Response {
    expect: Expect,
    state: State,
    /// `MARIADB_CLIENT_CACHE_METADATA` was agreed on the connection.
    cached_metadata: bool,
}

impl Response {
    pub fn new(expect: Expect) -> Self {
        let state = match expect {
            Expect::Rows => State::Rows { count: 0 },
            Expect::FieldList => State::Defs {
                left: u64::MAX,
                then: AfterDefs::Done,
            },
            _ => State::Start,
        };
        Self {
            expect,
            state,
            cached_metadata: false,
        }
    }

    /// The answer of a connection that agreed on MariaDB's metadata caching: a "metadata
    /// follows" byte after each column count, and when it is 0 no definitions before the EOF.
    pub fn caching_metadata(mut self, on: bool) -> Self {
        self.cached_metadata = on;
        self
    }

    /// Whether the next packet starts a result of a command that answers with results: an
    /// OK, an error, a file request or a column count.
    pub fn at_result_start(&self) -> bool {
        self.state == State::Start && self.expect == Expect::Results
    }

    /// Whether the next packet is a row (or the EOF after the rows).
    pub fn in_rows(&self) -> bool {
        matches!(self.state, State::Rows { .. })
    }

    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// Takes the next packet of the answer.
    pub fn step(&mut self, packet: Seen<'_>) -> Result<Step, Malformed> {
        let Seen::Whole(payload) = packet else {
            return match self.state {
                State::Rows { count } => {
                    self.state = State::Rows { count: count + 1 };
                    Ok(Step::More)
                }
                State::Defs { left, then } if left > 0 => self.definition(left, then),
                _ => Err(Malformed("unexpected long packet")),
            };
        };
        if payload.first() == Some(&reply::ERR_HEADER) && self.state != State::Finished {
            return self.finish(Outcome::Err(reply::Err::decode(payload)?));
        }
        match self.state {
            State::Start => self.start(payload),
            State::Defs { left, then } => match Eof::decode(payload) {
                // COM_FIELD_LIST's definitions end at an EOF, however many.
                Some(eof) if then == AfterDefs::Done => self.after_defs(eof, then),
                _ if left == 0 => Err(Malformed("more definitions than announced")),
                _ => self.definition(left, then),
            },
            State::DefsEof { then } => match Eof::decode(payload) {
                Some(eof) => self.after_defs(eof, then),
                None => Err(Malformed("definitions without their EOF")),
            },
            State::Rows { count } => match Eof::decode(payload) {
                Some(eof) => self.end_of_result(Outcome::Rows {
                    count,
                    status: eof.status,
                }),
                None => {
                    self.state = State::Rows { count: count + 1 };
                    Ok(Step::More)
                }
            },
            State::Finished => Err(Malformed("a packet after the end of the answer")),
        }
    }

    /// The first packet of a result.
    fn start(&mut self, payload: &[u8]) -> Result<Step, Malformed> {
        match (self.expect, payload.first()) {
            (Expect::One, _) => {
                let outcome = match payload.first() {
                    Some(&reply::OK_HEADER) => reply::Ok::decode(payload)
                        .map(Outcome::Ok)
                        .unwrap_or(Outcome::Other),
                    _ => Outcome::Other,
                };
                self.finish(outcome)
            }
            (Expect::Prepare, Some(&reply::OK_HEADER)) => self.prepared(payload),
            (Expect::Results, Some(&reply::OK_HEADER)) => {
                self.end_of_result(Outcome::Ok(reply::Ok::decode(payload)?))
            }
            (Expect::Results, Some(0xfb)) => Ok(Step::LocalInfile),
            (Expect::Results, Some(_)) => {
                let mut r = Reader::new(payload);
                let columns = r.lenenc("column count")?;
                if columns == 0 {
                    return Err(Malformed("a result set without columns"));
                }
                let definitions = match self.cached_metadata {
                    true => match r.u8("metadata follows")? {
                        0 => false,
                        1 => true,
                        _ => return Err(Malformed("a metadata flag that is neither 0 nor 1")),
                    },
                    false => true,
                };
                self.state = match definitions {
                    true => State::Defs {
                        left: columns,
                        then: AfterDefs::Rows,
                    },
                    false => State::DefsEof {
                        then: AfterDefs::Rows,
                    },
                };
                Ok(Step::More)
            }
            _ => Err(Malformed("unexpected first packet of an answer")),
        }
    }

    /// `COM_STMT_PREPARE_OK`: id, columns, parameters.
    fn prepared(&mut self, payload: &[u8]) -> Result<Step, Malformed> {
        let mut r = Reader::new(payload);
        r.u8("header")?;
        let id = r.u32("statement id")?;
        let columns = r.u16("columns")?;
        let params = r.u16("parameters")?;
        let after_columns = AfterDefs::Prepared { id };
        match (params, columns) {
            (0, 0) => self.finish(Outcome::Prepared { id }),
            (0, n) => {
                self.state = State::Defs {
                    left: u64::from(n),
                    then: after_columns,
                };
                Ok(Step::More)
            }
            (n, columns) => {
                self.state = State::Defs {
                    left: u64::from(n),
                    then: match columns {
                        0 => after_columns,
                        columns => AfterDefs::Columns { id, columns },
                    },
                };
                Ok(Step::More)
            }
        }
    }

    fn definition(&mut self, left: u64, then: AfterDefs) -> Result<Step, Malformed> {
        self.state = match (left - 1, then) {
            (_, AfterDefs::Done) => State::Defs { left, then },
            (0, then) => State::DefsEof { then },
            (left, then) => State::Defs { left, then },
        };
        Ok(Step::More)
    }

    fn after_defs(&mut self, eof: Eof, then: AfterDefs) -> Result<Step, Malformed> {
        match then {
            // An execute that opened a cursor: rows come with COM_STMT_FETCH.
            AfterDefs::Rows if eof.status & status::CURSOR_EXISTS != 0 => {
                self.finish(Outcome::Rows {
                    count: 0,
                    status: eof.status,
                })
            }
            AfterDefs::Rows => {
                self.state = State::Rows { count: 0 };
                Ok(Step::More)
            }
            AfterDefs::Columns { id, columns } => {
                self.state = State::Defs {
                    left: u64::from(columns),
                    then: AfterDefs::Prepared { id },
                };
                Ok(Step::More)
            }
            AfterDefs::Prepared { id } => self.finish(Outcome::Prepared { id }),
            AfterDefs::Done => self.finish(Outcome::Other),
        }
    }

    /// A result ended: the answer too, unless the server says more results follow.
    fn end_of_result(&mut self, outcome: Outcome) -> Result<Step, Malformed> {
        let more = outcome
            .status()
            .is_some_and(|s| s & status::MORE_RESULTS != 0);
        if more && self.expect == Expect::Results {
            self.state = State::Start;
            Ok(Step::Result(outcome))
        } else {
            self.finish(outcome)
        }
    }

    fn finish(&mut self, outcome: Outcome) -> Result<Step, Malformed> {
        self.state = State::Finished;
        Ok(Step::Done(outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn eof(status: u16) -> Vec<u8> {
        let mut out = Vec::new();
        Eof {
            warnings: 0,
            status,
        }
        .encode(&mut out);
        out
    }

    fn ok(status: u16, rows: u64) -> Vec<u8> {
        let mut out = Vec::new();
        reply::Ok {
            affected_rows: rows,
            status,
            ..Default::default()
        }
        .encode(&mut out);
        out
    }

    /// Feeds whole packets; returns every step.
    fn run(expect: Expect, packets: &[Vec<u8>]) -> Vec<Step> {
        run_on(Response::new(expect), packets)
    }

    /// Feeds whole packets to `r`; returns every step.
    fn run_on(mut r: Response, packets: &[Vec<u8>]) -> Vec<Step> {
        packets
            .iter()
            .map(|p| r.step(Seen::Whole(p)).expect("a valid packet"))
            .collect()
    }

    #[test]
    fn a_result_set_ends_at_its_second_eof() {
        let def = b"\x03def\x00\x00\x00\x011\x00\x0c?\x00\x01\x00\x00\x00\x08\x81\x00\x00\x00\x00"
            .to_vec();
        let steps = run(
            Expect::Results,
            &[
                vec![1],
                def,
                eof(2),
                b"\x011".to_vec(),
                b"\x012".to_vec(),
                eof(2),
            ],
        );
        assert_eq!(
            steps.last(),
            Some(&Step::Done(Outcome::Rows {
                count: 2,
                status: 2
            }))
        );
        assert!(steps[..5].iter().all(|s| *s == Step::More));
    }

    #[test]
    fn more_results_keep_the_answer_open_until_an_error() {
        let steps = run(
            Expect::Results,
            &[
                ok(status::MORE_RESULTS | 2, 1),
                ok(status::MORE_RESULTS | 2, 3),
                b"\xff\x7a\x04#42S02no".to_vec(),
            ],
        );
        assert!(matches!(steps[0], Step::Result(Outcome::Ok(_))));
        assert!(matches!(steps[1], Step::Result(Outcome::Ok(_))));
        assert!(matches!(&steps[2], Step::Done(Outcome::Err(e)) if e.code == 1146));
    }

    #[test]
    fn a_prepared_statement_skips_what_it_has_none_of() {
        let def = b"\x03def".to_vec();
        // Two parameters, no columns (an INSERT).
        let prepare_ok = b"\x00\x07\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00".to_vec();
        let steps = run(
            Expect::Prepare,
            &[prepare_ok, def.clone(), def.clone(), eof(2)],
        );
        assert_eq!(steps.last(), Some(&Step::Done(Outcome::Prepared { id: 7 })));
        // One parameter, one column.
        let prepare_ok = b"\x00\x08\x00\x00\x00\x01\x00\x01\x00\x00\x00\x00".to_vec();
        let steps = run(
            Expect::Prepare,
            &[prepare_ok, def.clone(), eof(2), def, eof(2)],
        );
        assert_eq!(steps.last(), Some(&Step::Done(Outcome::Prepared { id: 8 })));
        assert_eq!(steps.len(), 5);
    }

    #[test]
    fn a_cursor_ends_the_execute_after_its_definitions() {
        let steps = run(
            Expect::Results,
            &[vec![1], b"\x03def".to_vec(), eof(status::CURSOR_EXISTS)],
        );
        assert!(matches!(
            steps[2],
            Step::Done(Outcome::Rows { count: 0, .. })
        ));
        let fetched = run(Expect::Rows, &[b"\x00\x00".to_vec(), eof(0x80)]);
        assert!(matches!(
            fetched[1],
            Step::Done(Outcome::Rows { count: 1, .. })
        ));
    }

    #[test]
    fn local_infile_and_long_packets() {
        let mut r = Response::new(Expect::Results);
        assert_eq!(
            r.step(Seen::Whole(b"\xfbdata.csv")).expect("ok"),
            Step::LocalInfile
        );
        assert!(matches!(
            r.step(Seen::Whole(&ok(2, 0))).expect("ok"),
            Step::Done(Outcome::Ok(_))
        ));
        let mut r = Response::new(Expect::Results);
        assert!(r.step(Seen::Large).is_err(), "a long first packet");
        let mut r = Response::new(Expect::Results);
        r.step(Seen::Whole(&[1])).expect("count");
        assert_eq!(r.step(Seen::Large).expect("a long definition"), Step::More);
        r.step(Seen::Whole(&eof(2))).expect("eof");
        assert_eq!(r.step(Seen::Large).expect("a long row"), Step::More);
        assert!(r.step(Seen::Whole(&eof(2))).is_ok());
        assert!(r.is_finished());
        assert!(r.step(Seen::Whole(&eof(2))).is_err(), "after the end");
    }

    #[test]
    fn cached_metadata_is_read_from_the_column_count() {
        let def = b"\x03def".to_vec();
        let row = b"\x00\x00\x01".to_vec();
        let cached = |packets: &[Vec<u8>]| {
            run_on(
                Response::new(Expect::Results).caching_metadata(true),
                packets,
            )
        };
        // An execute whose definitions the client has: the count, 0, then the EOF at once.
        let steps = cached(&[vec![1, 0], eof(2), row.clone(), eof(2)]);
        assert_eq!(
            steps.last(),
            Some(&Step::Done(Outcome::Rows {
                count: 1,
                status: 2
            }))
        );
        // The definitions follow: read as without caching.
        let steps = cached(&[vec![2, 1], def.clone(), def.clone(), eof(2), row, eof(2)]);
        assert!(matches!(
            steps.last(),
            Some(Step::Done(Outcome::Rows { count: 1, .. }))
        ));
        // A cursor opened without the definitions: the EOF ends the execute.
        let steps = cached(&[vec![1, 0], eof(status::CURSOR_EXISTS | 2)]);
        assert!(matches!(
            steps.last(),
            Some(Step::Done(Outcome::Rows { count: 0, .. }))
        ));
        // Each result of several carries its own flag.
        let steps = cached(&[
            vec![1, 0],
            eof(2),
            eof(status::MORE_RESULTS | 2),
            vec![1, 1],
            def.clone(),
            eof(2),
            eof(2),
        ]);
        assert!(matches!(
            steps[2],
            Step::Result(Outcome::Rows { count: 0, .. })
        ));
        assert!(matches!(
            steps[6],
            Step::Done(Outcome::Rows { count: 0, .. })
        ));
        // Without its flag, or with another value: malformed.
        for count in [vec![1], vec![1, 2]] {
            let mut r = Response::new(Expect::Results).caching_metadata(true);
            assert!(r.step(Seen::Whole(&count)).is_err(), "{count:?}");
        }
        // Without caching, the same count with a flag would be a count, then a definition.
        let mut r = Response::new(Expect::Results);
        r.step(Seen::Whole(&[1, 0])).expect("a count");
        assert_eq!(r.step(Seen::Whole(&def)), Ok(Step::More));
        assert!(!r.in_rows());
    }

    proptest! {
        #[test]
        fn steps_never_panic(packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..12), which in 0usize..5, cached in any::<bool>()) {
            let expect = [Expect::Results, Expect::Prepare, Expect::FieldList, Expect::Rows, Expect::One][which];
            let mut r = Response::new(expect).caching_metadata(cached);
            for p in &packets {
                if r.step(Seen::Whole(p)).is_err() {
                    break;
                }
            }
        }
    }
}
