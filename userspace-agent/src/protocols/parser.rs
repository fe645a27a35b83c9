//! The one interface every protocol parser implements: the bytes both peers of one
//! connection sent, in order, in; messages out.
//!
//! A parser follows a single connection. It is told which peer sent each [`Segment`]
//! (never which of them the traced process is: that is the caller's business), copes
//! with lossy captures (a prefix, a gap of known length, maybe a tail) and with joining
//! mid-stream, and reports what the bytes prove, never a guess: a message it lost sync
//! in is dropped and counted in [`ParserStats`].
//!
//! Two shapes of report fit every protocol Sonde parses:
//! - message by message ([`Message::Request`], [`Message::Response`] and their ends),
//!   when the start of a request must be known as it arrives (HTTP: the span's identity
//!   is decided then, and a multiplexed protocol says which stream each belongs to);
//! - whole exchanges ([`Message::Call`]), when a call is only worth reporting once its
//!   answer is in (database and cache protocols).
//!
//! Pairing requests with responses is not the parser's job beyond framing: `spans`
//! pairs messages by stream, whatever the protocol.

use super::Segment;
use super::db::DbCall;
use super::http1::{RequestHead, ResponseHead};

/// Which peer of the connection sent a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Bytes the client sent: requests (queries, commands).
    Client,
    /// Bytes the server sent: responses.
    Server,
}

/// A request stream of a multiplexed protocol; `StreamId::ONLY` for protocols that carry
/// one exchange at a time in order (HTTP/1 with pipelining, database protocols).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StreamId(pub u32);

impl StreamId {
    /// The stream of protocols without streams.
    pub const ONLY: StreamId = StreamId(0);
}

/// The head of a request, as its protocol describes it.
#[derive(Debug)]
pub enum RequestHeadOf {
    Http1(RequestHead),
}

/// The head of a response, as its protocol describes it.
#[derive(Debug)]
pub enum ResponseHeadOf {
    Http1(ResponseHead),
}

/// A finished call reported whole. Boxed: a call carries many attributes, and every
/// message would otherwise be as large as one.
#[derive(Debug)]
pub enum CallOf {
    Db(Box<DbCall>),
}

/// What a parser reports, in the order the bytes proved it.
#[derive(Debug)]
pub enum Message {
    /// A request's head is complete; it started at `ts_ns` (its first byte).
    Request {
        stream: StreamId,
        ts_ns: u64,
        head: RequestHeadOf,
    },
    /// The request's body ended at `ts_ns`.
    RequestEnd {
        stream: StreamId,
        ts_ns: u64,
        body_bytes: u64,
    },
    /// A response's head is complete.
    Response {
        stream: StreamId,
        ts_ns: u64,
        head: ResponseHeadOf,
    },
    /// The response ended at `ts_ns` (its last byte): the exchange is complete.
    ResponseEnd {
        stream: StreamId,
        ts_ns: u64,
        body_bytes: u64,
    },
    /// A whole exchange, reported once complete.
    Call(CallOf),
    /// The peer's message stream lost its boundaries; the parser resynchronises. What
    /// the caller was told about the message in progress no longer holds.
    Desync { from: Side },
    /// The connection closed (or the peer stopped sending) in the middle of a message
    /// of `from`, last seen at `ts_ns`.
    Cut { from: Side, ts_ns: u64 },
    /// What the parser counted instead of reporting since its last `Counted` (an
    /// increase, sent only when there is one).
    Counted(ParserStats),
}

/// What a parser counted instead of reporting: cumulative from [`Parser::stats`], as an
/// increase in [`Message::Counted`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParserStats {
    /// Times a message stream lost its boundaries and resynchronised.
    pub desyncs: u64,
    /// Bytes the parser could not frame and skipped while resynchronising.
    pub desync_bytes: u64,
    /// Requests dropped without a report (connection closed, lost sync, queue full).
    pub dropped_calls: u64,
    /// The connection switched to TLS after an SSLRequest/STARTTLS: no more plaintext on
    /// the socket (a probed TLS library's plaintext, if any, resumes parsing).
    pub tls_upgrades: u64,
    /// Bytes deliberately left unparsed (e.g. the feed after Redis `MONITOR`).
    pub unparsed_bytes: u64,
}

impl ParserStats {
    /// What `self` counted beyond `before` (a cumulative count never goes down).
    pub fn since(&self, before: &ParserStats) -> ParserStats {
        ParserStats {
            desyncs: self.desyncs.saturating_sub(before.desyncs),
            desync_bytes: self.desync_bytes.saturating_sub(before.desync_bytes),
            dropped_calls: self.dropped_calls.saturating_sub(before.dropped_calls),
            tls_upgrades: self.tls_upgrades.saturating_sub(before.tls_upgrades),
            unparsed_bytes: self.unparsed_bytes.saturating_sub(before.unparsed_bytes),
        }
    }
}

/// What the caller wants after a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Continue,
    /// The caller dropped every request in flight (too many were waiting): responses to
    /// them must not pair with this request or later ones. Answered to a
    /// [`Message::Request`], before the parser goes on.
    RestartPairing,
}

/// Where a parser reports, one message at a time, so that the caller's answer can
/// take effect before the parser reads on.
pub trait Report {
    fn message(&mut self, msg: Message) -> Reply;
}

/// Collecting messages (tests, fuzzing): never restarts.
impl Report for Vec<Message> {
    fn message(&mut self, msg: Message) -> Reply {
        self.push(msg);
        Reply::Continue
    }
}

/// One connection's parser, whatever its protocol.
pub trait Parser: Send {
    /// Feeds the next segment `from` sent; what it completes is reported to `out`.
    fn push(&mut self, from: Side, seg: &Segment<'_>, out: &mut dyn Report);

    /// `from` will send nothing more (it shut its side down): a message delimited by
    /// the end of its stream ends here; one cut short is reported as [`Message::Cut`].
    fn end_of_stream(&mut self, from: Side, out: &mut dyn Report);

    /// The connection is gone: report what can still be proven, cuts included.
    fn finish(&mut self, out: &mut dyn Report);

    /// What was counted so far (the increases were also reported as they happened).
    fn stats(&self) -> ParserStats;

    /// The bytes fed from now on are a TLS library's plaintext; until here they were the
    /// socket's own (the ciphertext is never fed). A protocol that switches to TLS within
    /// itself (PostgreSQL's SSLRequest, MySQL's SSL request) resumes on the plaintext
    /// where the protocol does; one without such a switch has nothing to change.
    fn tls_started(&mut self) {}
}
