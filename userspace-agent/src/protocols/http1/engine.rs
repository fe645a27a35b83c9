//! The stream engine shared by both directions: `Core`, the state machine that
//! `RequestStream` and `ResponseStream` wrap. It walks each segment's known bytes and gap
//! through the parts of a message (start line, header block, body), emits the events,
//! resynchronises after a desync and stops parsing once the stream turns into a tunnel.

use std::collections::VecDeque;
use std::mem;

use super::blank_line::BlankLineScanner;
use super::bounded::bounded_extend;
use super::chunked::LAST_CHUNK;
use super::framing::{BodyStep, Framing, Next, RequestKind, request_body, response_body};
use super::headers::{FramingFields, Headers, parse_header_block};
use super::line::Progress;
use super::start_line::{
    LineParser, RequestLine, RequestLineParser, StartLine, StatusLine, StatusLineParser,
    looks_like_request, looks_like_response,
};
use super::{
    Http1Event, Incomplete, MAX_HEAD_BLOCK, MAX_STALLS, RequestHead, ResponseHead, Segment,
};

/// Direction-specific knowledge.
#[derive(Debug)]
pub(super) enum Side {
    Request {
        /// The last request asked to switch protocols (Upgrade or CONNECT): if what
        /// follows is not HTTP/1, it is the new protocol, not garbage.
        upgrade_pending: bool,
    },
    Response {
        /// Requests sent and not answered yet, oldest first.
        pending: VecDeque<RequestKind>,
    },
}

impl Side {
    fn line_parser(&self) -> LineParser {
        match self {
            Side::Request { .. } => LineParser::Request(RequestLineParser::new()),
            Side::Response { .. } => LineParser::Status(StatusLineParser::new()),
        }
    }

    /// Whether a segment starting with `head` may start a message (resync after desync).
    fn starts_message(&self, head: &[u8]) -> bool {
        match self {
            Side::Request { .. } => looks_like_request(head),
            Side::Response { .. } => looks_like_response(head),
        }
    }

    fn reset(&mut self) {
        match self {
            Side::Request { upgrade_pending } => *upgrade_pending = false,
            Side::Response { pending } => pending.clear(),
        }
    }
}

/// Where a stream is, between two bytes.
#[derive(Debug)]
pub(super) enum State {
    /// Between messages: the next byte starts a message.
    Idle,
    /// Reading a request or status line that started in the segment stamped `ts_ns`.
    StartLine { ts_ns: u64, parser: LineParser },
    /// Start line parsed; collecting header lines until the blank line.
    Headers(PartialHead),
    /// Inside a body (the message's Start event is out).
    Body { framing: Framing, body_bytes: u64 },
    /// Lost track of message boundaries: skip until a segment starts with a start line.
    Desync,
    /// After an upgrade or CONNECT: the rest of the stream is not HTTP/1.
    Tunnel,
}

/// A head whose start line is parsed and whose header block is being collected.
#[derive(Debug)]
pub(super) struct PartialHead {
    ts_ns: u64,
    line: StartLine,
    /// Header-block bytes, at most `MAX_HEAD_BLOCK`.
    block: Vec<u8>,
    blank: BlankLineScanner,
}

/// How much of a head was seen when its Start event goes out.
#[derive(Debug, Clone, Copy)]
enum HeadSeen {
    /// Every byte up to the blank line.
    Complete,
    /// Cut by the size bound, but the blank line was found in the same bytes.
    CutEnded,
    /// Cut by the size bound; the blank line may still be found in the known bytes.
    CutScanning(BlankLineScanner),
    /// Cut by a gap, the peer's turn or the close: where the head ends is unknown.
    CutLost,
}

impl HeadSeen {
    fn truncated(self) -> bool {
        !matches!(self, HeadSeen::Complete)
    }

    /// Whether we know where the head ends, so a bodiless message ends there too.
    fn end_known(self) -> bool {
        matches!(self, HeadSeen::Complete | HeadSeen::CutEnded)
    }

    fn rest_scanner(self) -> Option<BlankLineScanner> {
        match self {
            HeadSeen::CutScanning(scanner) => Some(scanner),
            _ => None,
        }
    }
}

/// The parser for one direction; `RequestStream` and `ResponseStream` differ only in `side`.
#[derive(Debug)]
pub(super) struct Core {
    pub(super) side: Side,
    pub(super) state: State,
    /// Timestamp of the last segment pushed, for ends found outside `push`.
    last_ts: u64,
}

impl Core {
    pub(super) fn new(side: Side) -> Self {
        Self {
            side,
            state: State::Idle,
            last_ts: 0,
        }
    }

    pub(super) fn in_message(&self) -> bool {
        matches!(self.state, State::Headers(_) | State::Body { .. })
    }

    pub(super) fn is_tunnel(&self) -> bool {
        matches!(self.state, State::Tunnel)
    }

    pub(super) fn push(&mut self, seg: &Segment<'_>, out: &mut Vec<Http1Event>) {
        let (head, gap, tail) = seg.parts();
        if head.is_empty() && gap == 0 && tail.is_empty() {
            return;
        }
        let ts = seg.ts_ns;
        self.last_ts = ts;
        if matches!(self.state, State::Desync) && self.side.starts_message(head) {
            self.state = State::Idle;
        }
        self.feed(head, ts, out);
        self.feed_gap(gap, ts, out);
        self.feed(tail, ts, out);
        if let State::Body {
            framing: Framing::ChunkedLostSync { recent },
            body_bytes,
        } = self.state
            && recent.ends_with(LAST_CHUNK)
        {
            out.push(Http1Event::MessageEnd {
                ts_ns: ts,
                body_bytes,
            });
            self.state = State::Idle;
        }
    }

    pub(super) fn end_at_peer_turn(&mut self, out: &mut Vec<Http1Event>) {
        let ts = self.last_ts;
        if let Some(head) = self.take_head() {
            self.finish_head(head, HeadSeen::CutLost, ts, out);
        }
        self.end_open_ended(ts, out);
    }

    pub(super) fn finish(&mut self, out: &mut Vec<Http1Event>) -> Option<Incomplete> {
        let ts = self.last_ts;
        let head = self.take_head();
        let head_cut = head.is_some();
        if let Some(head) = head {
            self.finish_head(head, HeadSeen::CutLost, ts, out);
        }
        let result = match mem::replace(&mut self.state, State::Idle) {
            State::Body {
                framing: Framing::UntilClose | Framing::Unknown { .. },
                body_bytes,
            } if !head_cut => {
                out.push(Http1Event::MessageEnd {
                    ts_ns: ts,
                    body_bytes,
                });
                None
            }
            State::Body { body_bytes, .. } => Some(Incomplete {
                ts_ns: ts,
                body_bytes,
            }),
            _ => None,
        };
        self.side.reset();
        result
    }

    /// Takes the head being collected out of the state, if that is the state.
    fn take_head(&mut self) -> Option<PartialHead> {
        match mem::replace(&mut self.state, State::Idle) {
            State::Headers(head) => Some(head),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Ends a body whose end can only be inferred (unknown or lost-sync framing).
    fn end_open_ended(&mut self, ts: u64, out: &mut Vec<Http1Event>) {
        if let State::Body {
            framing: Framing::Unknown { .. } | Framing::ChunkedLostSync { .. },
            body_bytes,
        } = self.state
        {
            out.push(Http1Event::MessageEnd {
                ts_ns: ts,
                body_bytes,
            });
            self.state = State::Idle;
        }
    }

    /// Feeds known bytes until all are used.
    fn feed(&mut self, mut bytes: &[u8], ts: u64, out: &mut Vec<Http1Event>) {
        let mut stalls = 0;
        while !bytes.is_empty() {
            let used = self.step(bytes, ts, out);
            if used == 0 {
                stalls += 1;
                debug_assert!(
                    stalls < MAX_STALLS,
                    "http1 parser stalled in {:?}",
                    self.state
                );
                if stalls >= MAX_STALLS {
                    return;
                }
                continue;
            }
            stalls = 0;
            bytes = bytes.get(used..).unwrap_or_default();
        }
    }

    /// Feeds `gap` unknown bytes until all are used.
    fn feed_gap(&mut self, mut gap: u64, ts: u64, out: &mut Vec<Http1Event>) {
        let mut stalls = 0;
        while gap > 0 {
            let used = self.step_gap(gap, ts, out);
            if used == 0 {
                stalls += 1;
                debug_assert!(
                    stalls < MAX_STALLS,
                    "http1 parser stalled in {:?}",
                    self.state
                );
                if stalls >= MAX_STALLS {
                    return;
                }
                continue;
            }
            stalls = 0;
            gap -= used.min(gap);
        }
    }

    /// Consumes some known bytes in the current state; returns how many.
    fn step(&mut self, bytes: &[u8], ts: u64, out: &mut Vec<Http1Event>) -> usize {
        match mem::replace(&mut self.state, State::Idle) {
            State::Idle => self.step_idle(bytes, ts, out),
            State::StartLine { ts_ns, parser } => self.step_start_line(ts_ns, parser, bytes, out),
            State::Headers(head) => self.step_headers(head, bytes, ts, out),
            State::Body {
                framing,
                body_bytes,
            } => {
                let (used, counted, step) = framing.consume(bytes);
                self.after_body_step(step, body_bytes.saturating_add(counted), ts, out);
                used
            }
            parked @ (State::Desync | State::Tunnel) => {
                self.state = parked;
                bytes.len()
            }
        }
    }

    /// Consumes some of `gap` unknown bytes in the current state; returns how many.
    fn step_gap(&mut self, gap: u64, ts: u64, out: &mut Vec<Http1Event>) -> u64 {
        match mem::replace(&mut self.state, State::Idle) {
            State::Idle => {
                self.lose_sync(ts, out);
                0
            }
            State::StartLine { ts_ns, .. } => {
                self.lose_sync(ts_ns, out);
                0
            }
            State::Headers(head) => {
                self.finish_head(head, HeadSeen::CutLost, ts, out);
                0
            }
            State::Body {
                framing,
                body_bytes,
            } => {
                let (used, step) = framing.skip(gap);
                self.after_body_step(step, body_bytes.saturating_add(used), ts, out);
                used
            }
            parked @ (State::Desync | State::Tunnel) => {
                self.state = parked;
                gap
            }
        }
    }

    fn step_idle(&mut self, bytes: &[u8], ts: u64, out: &mut Vec<Http1Event>) -> usize {
        // RFC 9112 §2.2: empty lines before a start line are to be ignored.
        let blank = bytes
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if blank > 0 {
            return blank;
        }
        let parser = self.side.line_parser();
        self.step_start_line(ts, parser, bytes, out)
    }

    fn step_start_line(
        &mut self,
        ts_ns: u64,
        mut parser: LineParser,
        bytes: &[u8],
        out: &mut Vec<Http1Event>,
    ) -> usize {
        let (used, progress) = parser.feed(bytes);
        match progress {
            Progress::More => self.state = State::StartLine { ts_ns, parser },
            Progress::Bad => self.lose_sync(ts_ns, out),
            Progress::Done(line) => {
                if let Side::Request { upgrade_pending } = &mut self.side {
                    *upgrade_pending = false;
                }
                self.state = State::Headers(PartialHead {
                    ts_ns,
                    line,
                    block: Vec::new(),
                    blank: BlankLineScanner::default(),
                });
            }
        }
        used
    }

    fn step_headers(
        &mut self,
        mut head: PartialHead,
        bytes: &[u8],
        ts: u64,
        out: &mut Vec<Http1Event>,
    ) -> usize {
        let end = head.blank.scan(bytes);
        let take = end.unwrap_or(bytes.len());
        // The usual case, a whole head in one segment: parsed where it lies, not copied.
        if let Some(end) = end
            && head.block.is_empty()
            && end <= MAX_HEAD_BLOCK
            && let Some(block) = bytes.get(..end)
        {
            self.finish_head_in(head.ts_ns, head.line, block, HeadSeen::Complete, ts, out);
            return end;
        }
        let stored = bounded_extend(
            &mut head.block,
            bytes.get(..take).unwrap_or(bytes),
            MAX_HEAD_BLOCK,
        );
        if stored < take {
            let seen = match end {
                Some(_) => HeadSeen::CutEnded,
                None => HeadSeen::CutScanning(head.blank),
            };
            self.finish_head(head, seen, ts, out);
        } else if end.is_some() {
            self.finish_head(head, HeadSeen::Complete, ts, out);
        } else {
            self.state = State::Headers(head);
        }
        take
    }

    /// Things do not look like HTTP/1 at a message boundary.
    fn lose_sync(&mut self, ts_ns: u64, out: &mut Vec<Http1Event>) {
        if let Side::Request {
            upgrade_pending: true,
        } = self.side
        {
            // The client switched protocols right after asking to: not garbage.
            self.state = State::Tunnel;
        } else {
            out.push(Http1Event::NotHttp { ts_ns });
            self.state = State::Desync;
        }
    }

    /// Emits the Start event for a head (if any) and enters what follows it.
    fn finish_head(
        &mut self,
        head: PartialHead,
        seen: HeadSeen,
        ts: u64,
        out: &mut Vec<Http1Event>,
    ) {
        self.finish_head_in(head.ts_ns, head.line, &head.block, seen, ts, out);
    }

    /// `finish_head` for a head whose start line is `line` and header block `block`.
    fn finish_head_in(
        &mut self,
        head_ts: u64,
        line: StartLine,
        block: &[u8],
        seen: HeadSeen,
        ts: u64,
        out: &mut Vec<Http1Event>,
    ) {
        // A cut head may lack the very fields that frame the body.
        let complete = !seen.truncated();
        let mut next = match line {
            StartLine::Request(line) => {
                let mut headers = Headers::with_capacity(block.len());
                let framing = parse_header_block(block, Some(&mut headers));
                let framing = complete.then_some(&framing);
                self.start_request(head_ts, line, headers, framing, out)
            }
            StartLine::Status(line) => {
                // Spans use no response field beyond those that frame the body: none is kept.
                let framing = parse_header_block(block, None);
                self.start_response(head_ts, line, complete.then_some(&framing), out)
            }
        };
        if let Next::Body(Framing::Unknown { head_rest }) = &mut next {
            *head_rest = seen.rest_scanner();
        }
        let after_head = if seen.end_known() {
            State::Idle
        } else {
            State::Desync
        };
        self.state = match next {
            Next::Interim => after_head,
            Next::NoBody => {
                out.push(Http1Event::MessageEnd {
                    ts_ns: ts,
                    body_bytes: 0,
                });
                after_head
            }
            Next::Tunnel => {
                out.push(Http1Event::MessageEnd {
                    ts_ns: ts,
                    body_bytes: 0,
                });
                State::Tunnel
            }
            Next::Body(framing) => State::Body {
                framing,
                body_bytes: 0,
            },
        };
    }

    /// Emits RequestStart; `framing` is `None` when the head was cut.
    fn start_request(
        &mut self,
        ts_ns: u64,
        line: RequestLine,
        headers: Headers,
        framing: Option<&FramingFields>,
        out: &mut Vec<Http1Event>,
    ) -> Next {
        if let Side::Request { upgrade_pending } = &mut self.side {
            *upgrade_pending = line.method == "CONNECT" || headers.get("upgrade").is_some();
        }
        out.push(Http1Event::RequestStart {
            ts_ns,
            head: RequestHead {
                method: line.method,
                target: line.target,
                version: line.version,
                headers,
                truncated: framing.is_none(),
            },
        });
        framing.map_or(
            Next::Body(Framing::Unknown { head_rest: None }),
            request_body,
        )
    }

    /// Emits ResponseStart for final responses; `framing` is `None` when the head was cut.
    fn start_response(
        &mut self,
        ts_ns: u64,
        line: StatusLine,
        framing: Option<&FramingFields>,
        out: &mut Vec<Http1Event>,
    ) -> Next {
        let status = line.status;
        if (100..200).contains(&status) && status != 101 {
            return Next::Interim;
        }
        let request = match &mut self.side {
            Side::Response { pending } => pending.pop_front(),
            Side::Request { .. } => None,
        }
        .unwrap_or(RequestKind::Other);
        out.push(Http1Event::ResponseStart {
            ts_ns,
            head: ResponseHead {
                version: line.version,
                status,
                truncated: framing.is_none(),
            },
        });
        response_body(status, request, framing)
    }

    fn after_body_step(
        &mut self,
        step: BodyStep,
        body_bytes: u64,
        ts: u64,
        out: &mut Vec<Http1Event>,
    ) {
        self.state = match step {
            BodyStep::Continue(framing) => State::Body {
                framing,
                body_bytes,
            },
            BodyStep::Done => {
                out.push(Http1Event::MessageEnd {
                    ts_ns: ts,
                    body_bytes,
                });
                State::Idle
            }
        };
    }

    /// Bytes held in buffers, for memory-bound tests.
    #[cfg(test)]
    pub(super) fn retained_bytes(&self) -> usize {
        let state = match &self.state {
            State::StartLine {
                parser: LineParser::Request(p),
                ..
            } => p.method.len() + p.target.capacity(),
            State::Headers(head) => {
                head.block.capacity()
                    + match &head.line {
                        StartLine::Request(line) => line.method.len() + line.target.capacity(),
                        StartLine::Status(_) => 0,
                    }
            }
            _ => 0,
        };
        let side = match &self.side {
            Side::Response { pending } => pending.capacity(),
            Side::Request { .. } => 0,
        };
        state + side
    }
}

#[cfg(test)]
mod tests;
