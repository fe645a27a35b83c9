//! JSON lines: one OTLP-JSON span object per line (see [`super::otlp_json`] for the
//! encoding), for piping into `jq`, files, or log shippers.

use std::io::Write;

use super::otlp_json::OtlpSpan;
use super::{SinkError, SpanSink};
use crate::spans::Span;

/// Above this, the line buffer is released after a batch instead of kept for reuse, so
/// one huge batch does not pin its memory for the life of the process.
const MAX_RETAINED_BUFFER: usize = 1 << 20;

/// Writes each exported span as one JSON object per line.
///
/// A whole batch is encoded into memory and handed to the writer with one `write_all`
/// and one `flush`: a consumer tailing the output never sees half a line, and an
/// unbuffered writer (stdout) costs one syscall per batch rather than per token.
pub struct JsonLinesSink<W: Write> {
    writer: W,
    buf: Vec<u8>,
}

impl<W: Write> JsonLinesSink<W> {
    pub fn new(writer: W) -> Self {
        Self {
            writer,
            buf: Vec::new(),
        }
    }

    pub fn get_ref(&self) -> &W {
        &self.writer
    }

    pub fn into_inner(self) -> W {
        self.writer
    }
}

impl<W: Write> SpanSink for JsonLinesSink<W> {
    fn export(&mut self, spans: Vec<Span>, _now_unix_nano: u64) -> Result<(), SinkError> {
        if spans.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        for span in &spans {
            serde_json::to_writer(&mut self.buf, &OtlpSpan::from(span))?;
            self.buf.push(b'\n');
        }
        let written = self
            .writer
            .write_all(&self.buf)
            .and_then(|()| self.writer.flush())
            .map_err(SinkError::io("writing JSON spans"));
        if self.buf.capacity() > MAX_RETAINED_BUFFER {
            self.buf = Vec::new();
        }
        written
    }

    fn tick(&mut self, _now_unix_nano: u64) -> Result<(), SinkError> {
        // Nothing is held back between batches.
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), SinkError> {
        self.writer
            .flush()
            .map_err(SinkError::io("flushing JSON spans"))
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context;
    use serde_json::{Value as Json, json};

    use super::*;
    use crate::sinks::test_support::{SpanExt, span, span_id, trace_id};
    use crate::spans::SpanKind;

    /// Records how often it was flushed, to check the once-per-batch promise.
    #[derive(Default)]
    struct CountingWriter {
        bytes: Vec<u8>,
        flushes: usize,
    }

    impl Write for CountingWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    fn lines(sink: &JsonLinesSink<CountingWriter>) -> anyhow::Result<Vec<Json>> {
        let text = std::str::from_utf8(&sink.get_ref().bytes)?;
        anyhow::ensure!(text.ends_with('\n'), "output must end with a newline");
        text.lines()
            .map(|line| serde_json::from_str(line).context("each line is one JSON value"))
            .collect()
    }

    #[test]
    fn encodes_every_field_in_otlp_json() -> anyhow::Result<()> {
        let child = span(trace_id(0x36), span_id(2), Some(span_id(1)), "nginx")
            .named("GET /orders")
            .kind(SpanKind::Client)
            .timed(1_000, 10_020_000)
            .attr("http.request.method", "GET")
            .attr("http.response.status_code", 503_i64)
            .attr("network.peer.retried", true)
            .error("HTTP 503");
        let mut sink = JsonLinesSink::new(CountingWriter::default());
        sink.export(vec![child], 0)?;

        let lines = lines(&sink)?;
        let [line] = lines.as_slice() else {
            anyhow::bail!("expected one line, got {}", lines.len());
        };
        assert_eq!(line["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(line["spanId"], "8000000000000002");
        assert_eq!(line["parentSpanId"], "8000000000000001");
        assert_eq!(line["name"], "GET /orders");
        assert_eq!(line["kind"], 3);
        assert_eq!(line["startTimeUnixNano"], "1700000000000001000");
        assert_eq!(line["endTimeUnixNano"], "1700000000010021000");
        assert_eq!(line["status"], json!({"code": 2, "message": "HTTP 503"}));
        assert_eq!(
            line["attributes"],
            json!([
                {"key": "http.request.method", "value": {"stringValue": "GET"}},
                {"key": "http.response.status_code", "value": {"intValue": "503"}},
                {"key": "network.peer.retried", "value": {"boolValue": true}},
            ])
        );
        assert_eq!(
            line["resource"],
            json!({"attributes": [{"key": "service.name", "value": {"stringValue": "nginx"}}]})
        );
        let mut keys: Vec<&str> = line
            .as_object()
            .context("a span is a JSON object")?
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "attributes",
                "endTimeUnixNano",
                "kind",
                "name",
                "parentSpanId",
                "resource",
                "spanId",
                "startTimeUnixNano",
                "status",
                "traceId",
            ],
            "no unexpected fields"
        );
        Ok(())
    }

    #[test]
    fn root_span_omits_parent_and_has_empty_status() -> anyhow::Result<()> {
        let root = span(trace_id(1), span_id(1), None, "nginx");
        let mut sink = JsonLinesSink::new(CountingWriter::default());
        sink.export(vec![root], 0)?;

        let lines = lines(&sink)?;
        let line = lines.first().context("one line")?;
        assert!(line.get("parentSpanId").is_none());
        assert_eq!(line["kind"], 2);
        assert_eq!(line["status"], json!({}));
        assert_eq!(line["attributes"], json!([]));
        Ok(())
    }

    #[test]
    fn error_without_message_omits_message() -> anyhow::Result<()> {
        let failed = span(trace_id(1), span_id(1), None, "nginx").error("");
        let mut sink = JsonLinesSink::new(CountingWriter::default());
        sink.export(vec![failed], 0)?;

        let lines = lines(&sink)?;
        assert_eq!(
            lines.first().context("one line")?["status"],
            json!({"code": 2})
        );
        Ok(())
    }

    #[test]
    fn one_line_per_span_and_one_flush_per_batch() -> anyhow::Result<()> {
        let mut sink = JsonLinesSink::new(CountingWriter::default());
        let batch = (1..=3)
            .map(|n| span(trace_id(1), span_id(n), None, "svc"))
            .collect();
        sink.export(batch, 0)?;
        sink.export(Vec::new(), 0)?;
        sink.tick(0)?;
        assert_eq!(sink.get_ref().flushes, 1);

        sink.export(vec![span(trace_id(2), span_id(9), None, "svc")], 0)?;
        assert_eq!(sink.get_ref().flushes, 2);

        let ids: Vec<Json> = lines(&sink)?
            .into_iter()
            .map(|l| l["spanId"].clone())
            .collect();
        assert_eq!(
            ids,
            [
                "8000000000000001",
                "8000000000000002",
                "8000000000000003",
                "8000000000000009"
            ]
        );
        sink.shutdown()?;
        assert_eq!(sink.into_inner().flushes, 3);
        Ok(())
    }
}
