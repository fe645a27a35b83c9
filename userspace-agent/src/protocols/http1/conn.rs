//! Both directions of one HTTP/1 connection as one [`Parser`]: a request stream and a
//! response stream that tell each other what only the other can know.
//!
//! - A message of unknown length ends when the peer starts its next one ("peer turn").
//! - A response's framing depends on its request's method (no body after `HEAD`, a
//!   tunnel after a 2xx to `CONNECT`), so each request is announced to the responses.

use std::borrow::Cow;

use super::{Http1Event, RequestStream, ResponseStream};
use crate::protocols::Segment;
use crate::protocols::parser::{
    Message, Parser, ParserStats, Reply, Report, RequestHeadOf, ResponseHeadOf, Side, StreamId,
};

/// One HTTP/1 connection: requests from the client, responses from the server.
#[derive(Debug, Default)]
pub struct Http1Conn {
    requests: RequestStream,
    responses: ResponseStream,
    /// Reused between segments.
    events: Vec<Http1Event>,
    stats: ParserStats,
}

impl Http1Conn {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports the events one stream produced, with what the other stream learns.
    fn report(&mut self, from: Side, events: &mut Vec<Http1Event>, out: &mut dyn Report) {
        for event in events.drain(..) {
            match event {
                Http1Event::RequestStart { ts_ns, head } => {
                    // A response of unknown length ends where the next request starts.
                    let mut ended = Vec::new();
                    self.responses.end_at_peer_turn(&mut ended);
                    self.report_all(Side::Server, ended, out);
                    let method: Cow<'static, str> = head.method.clone();
                    let reply = out.message(Message::Request {
                        stream: StreamId::ONLY,
                        ts_ns,
                        head: RequestHeadOf::Http1(head),
                    });
                    if reply == Reply::RestartPairing {
                        self.responses = ResponseStream::new();
                    }
                    self.responses.expect_response(&method);
                }
                Http1Event::ResponseStart { ts_ns, head } => {
                    // A request body of unknown length (there is none in HTTP/1.1, but a
                    // stream that lost sync may think so) ends at the response.
                    let mut ended = Vec::new();
                    self.requests.end_at_peer_turn(&mut ended);
                    self.report_all(Side::Client, ended, out);
                    out.message(Message::Response {
                        stream: StreamId::ONLY,
                        ts_ns,
                        head: ResponseHeadOf::Http1(head),
                    });
                }
                Http1Event::MessageEnd { ts_ns, body_bytes } => {
                    let stream = StreamId::ONLY;
                    out.message(match from {
                        Side::Client => Message::RequestEnd {
                            stream,
                            ts_ns,
                            body_bytes,
                        },
                        Side::Server => Message::ResponseEnd {
                            stream,
                            ts_ns,
                            body_bytes,
                        },
                    });
                }
                Http1Event::NotHttp { .. } => {
                    self.stats.desyncs += 1;
                    out.message(Message::Desync { from });
                    out.message(Message::Counted(ParserStats {
                        desyncs: 1,
                        ..ParserStats::default()
                    }));
                }
            }
        }
    }

    fn report_all(&mut self, from: Side, mut events: Vec<Http1Event>, out: &mut dyn Report) {
        if !events.is_empty() {
            self.report(from, &mut events, out);
        }
    }

    /// Ends `from`'s stream: what its end delimits, then what it cut short.
    fn end(&mut self, from: Side, out: &mut dyn Report) {
        let mut events = std::mem::take(&mut self.events);
        let cut = match from {
            Side::Client => self.requests.finish(&mut events),
            Side::Server => self.responses.finish(&mut events),
        };
        self.report(from, &mut events, out);
        self.events = events;
        if let Some(cut) = cut {
            out.message(Message::Cut {
                from,
                ts_ns: cut.ts_ns,
            });
        }
    }
}

impl Parser for Http1Conn {
    fn push(&mut self, from: Side, seg: &Segment<'_>, out: &mut dyn Report) {
        let mut events = std::mem::take(&mut self.events);
        match from {
            Side::Client => self.requests.push(seg, &mut events),
            Side::Server => self.responses.push(seg, &mut events),
        }
        self.report(from, &mut events, out);
        self.events = events;
    }

    fn end_of_stream(&mut self, from: Side, out: &mut dyn Report) {
        self.end(from, out);
    }

    fn finish(&mut self, out: &mut dyn Report) {
        self.end(Side::Client, out);
        self.end(Side::Server, out);
    }

    fn stats(&self) -> ParserStats {
        self.stats
    }
}
