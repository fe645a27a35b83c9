//! Ring-buffer records decoded into typed events: sizes, kinds and enum values are
//! checked, payloads borrowed from the record. A record that does not decode is an
//! error the caller counts (`decode_errors`), never a panic.

use thiserror::Error;

use crate::abi::{
    CtxFormat, CtxRole, Direction, EV_DATA, EV_EXEC, EV_EXIT, EV_LIBS, EV_SOCK_STATE,
    EXEC_ARGS_MAX, EXEC_ENV_MAX, EXEC_FILENAME_MAX, ExecSnapshot, InjectStatus, KernelParentSource,
    MAX_CAPTURE, PlainHeader, RawDataHeader, RawExecHeader, RawProcEvent, RawSockStateEvent,
    SRC_GNUTLS, SRC_GO, SRC_OPENSSL, SRC_SOCKET, TAIL_BYTES, offset_of_tail, read_record,
};
use crate::capture::segment::{Source, TlsLibrary, TlsSource, TlsVersion};

/// A decoded data event borrowing its payload from the ring buffer record.
#[derive(Debug)]
pub struct DataEvent<'a> {
    pub header: RawDataHeader,
    pub direction: Direction,
    pub ctx_role: CtxRole,
    pub parent_source: KernelParentSource,
    pub ctx_format: CtxFormat,
    pub inject_status: InjectStatus,
    /// Where the bytes were read: the socket, or a TLS library's plaintext.
    pub source: Source,
    pub data: &'a [u8],
    pub tail: &'a [u8],
}

/// One ring-buffer record, decoded.
#[derive(Debug)]
pub enum Event<'a> {
    Data(DataEvent<'a>),
    SockState(RawSockStateEvent),
    Exec {
        tgid: u32,
        ts_ns: u64,
        snapshot: ExecSnapshot<'a>,
    },
    Exit {
        tgid: u32,
        ts_ns: u64,
    },
    /// The process's dynamic loader changed its list of libraries (dlopen).
    Libraries {
        tgid: u32,
    },
}

/// Why a ring-buffer record could not be decoded (counted, never fatal).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty record")]
    Empty,
    #[error("record of kind {kind} is {len} bytes, shorter than its header")]
    Short { kind: u8, len: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("field {field} has invalid value {value}")]
    BadField { field: &'static str, value: u64 },
}

fn read_header<T: PlainHeader>(record: &[u8]) -> Result<T, DecodeError> {
    read_record(record).ok_or(DecodeError::Short {
        kind: record.first().copied().unwrap_or(0),
        len: record.len(),
    })
}

impl<'a> Event<'a> {
    pub fn decode(record: &'a [u8]) -> Result<Self, DecodeError> {
        let kind = *record.first().ok_or(DecodeError::Empty)?;
        match kind {
            EV_DATA => DataEvent::decode(record).map(Event::Data),
            EV_SOCK_STATE => read_header::<RawSockStateEvent>(record).map(Event::SockState),
            EV_EXEC => decode_exec(record),
            EV_EXIT => {
                let raw = read_header::<RawProcEvent>(record)?;
                Ok(Event::Exit {
                    tgid: raw.tgid,
                    ts_ns: raw.ts_ns,
                })
            }
            EV_LIBS => {
                let raw = read_header::<RawProcEvent>(record)?;
                Ok(Event::Libraries { tgid: raw.tgid })
            }
            other => Err(DecodeError::UnknownKind(other)),
        }
    }
}

impl<'a> DataEvent<'a> {
    fn decode(record: &'a [u8]) -> Result<Self, DecodeError> {
        let header: RawDataHeader = read_header(record)?;
        let direction = match header.direction {
            0 => Direction::Ingress,
            1 => Direction::Egress,
            v => {
                return Err(DecodeError::BadField {
                    field: "direction",
                    value: v.into(),
                });
            }
        };
        let ctx_role = match header.ctx_role {
            0 => CtxRole::None,
            1 => CtxRole::ServerRequest,
            2 => CtxRole::ClientRequest,
            3 => CtxRole::InSpan,
            v => {
                return Err(DecodeError::BadField {
                    field: "ctx_role",
                    value: v.into(),
                });
            }
        };
        let parent_source = match header.parent_source {
            0 => KernelParentSource::None,
            1 => KernelParentSource::Thread,
            2 => KernelParentSource::Fork,
            3 => KernelParentSource::Header,
            4 => KernelParentSource::TcpOption,
            5 => KernelParentSource::Goroutine,
            6 => KernelParentSource::ThreadLastRead,
            v => {
                return Err(DecodeError::BadField {
                    field: "parent_source",
                    value: v.into(),
                });
            }
        };
        let ctx_format = match header.ctx_format {
            0 => CtxFormat::None,
            1 => CtxFormat::W3c,
            2 => CtxFormat::B3,
            3 => CtxFormat::B3Multi,
            4 => CtxFormat::Jaeger,
            5 => CtxFormat::Xray,
            v => {
                return Err(DecodeError::BadField {
                    field: "ctx_format",
                    value: v.into(),
                });
            }
        };
        let inject_status = match header.inject_status {
            0 => InjectStatus::None,
            1 => InjectStatus::Injected,
            2 => InjectStatus::AppHeader,
            3 => InjectStatus::Skipped,
            4 => InjectStatus::Failed,
            v => {
                return Err(DecodeError::BadField {
                    field: "inject_status",
                    value: v.into(),
                });
            }
        };
        let source = match header.source {
            SRC_SOCKET => Source::Socket,
            SRC_OPENSSL | SRC_GO | SRC_GNUTLS => Source::Tls(TlsSource {
                library: match header.source {
                    SRC_OPENSSL => TlsLibrary::OpenSsl,
                    SRC_GO => TlsLibrary::Go,
                    _ => TlsLibrary::GnuTls,
                },
                // The kernel sends only 0x0300-0x0304, else 0.
                version: TlsVersion::from_wire(header.tls_version),
            }),
            v => {
                return Err(DecodeError::BadField {
                    field: "source",
                    value: v.into(),
                });
            }
        };
        let captured = header.captured_len as usize;
        if captured > MAX_CAPTURE || captured as u64 > header.total_len {
            return Err(DecodeError::BadField {
                field: "captured_len",
                value: captured as u64,
            });
        }
        let tail_len = usize::from(header.tail_len);
        if tail_len > TAIL_BYTES {
            return Err(DecodeError::BadField {
                field: "tail_len",
                value: tail_len as u64,
            });
        }
        let data = record
            .get(size_of::<RawDataHeader>()..size_of::<RawDataHeader>() + captured)
            .ok_or(DecodeError::Short {
                kind: EV_DATA,
                len: record.len(),
            })?;
        Ok(DataEvent {
            header,
            direction,
            ctx_role,
            parent_source,
            ctx_format,
            inject_status,
            source,
            data,
            tail: &record[offset_of_tail()..offset_of_tail() + tail_len],
        })
    }
}

fn decode_exec(record: &[u8]) -> Result<Event<'_>, DecodeError> {
    let raw: RawExecHeader = read_header(record)?;
    let data = &record[size_of::<RawExecHeader>()..];
    let part = |start: usize, len: u16, max: usize, field: &'static str| {
        let len = usize::from(len);
        if len > max {
            return Err(DecodeError::BadField {
                field,
                value: len as u64,
            });
        }
        data.get(start..start + len).ok_or(DecodeError::Short {
            kind: EV_EXEC,
            len: record.len(),
        })
    };
    Ok(Event::Exec {
        tgid: raw.tgid,
        ts_ns: raw.ts_ns,
        snapshot: ExecSnapshot {
            traced: raw.traced != 0,
            filename: part(0, raw.filename_len, EXEC_FILENAME_MAX, "filename_len")?,
            args: part(EXEC_FILENAME_MAX, raw.args_len, EXEC_ARGS_MAX, "args_len")?,
            env: part(
                EXEC_FILENAME_MAX + EXEC_ARGS_MAX,
                raw.env_len,
                EXEC_ENV_MAX,
                "env_len",
            )?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::RawTraceCtx;

    fn data_record(captured: &[u8], total: u64) -> Vec<u8> {
        let mut header = RawDataHeader {
            kind: EV_DATA,
            direction: 1,
            syscall: 2,
            family: 2,
            ctx_role: 0,
            parent_source: 0,
            tail_len: 0,
            tgid: 7,
            tid: 8,
            ts_ns: 9,
            sock_id: 10,
            total_len: total,
            captured_len: captured.len() as u32,
            local_port: 80,
            remote_port: 5555,
            local_addr: [0; 16],
            remote_addr: [0; 16],
            ctx_format: 0,
            inject_status: 0,
            trace_flags: 1,
            source: 0,
            fd: 3,
            tls_version: 0,
            _pad: [0; 6],
            sent_bytes: 0,
            folded_bytes: 0,
            folded_ts_ns: 0,
            ctx: RawTraceCtx::default(),
            tail: [0; TAIL_BYTES],
        };
        header.tail[..3].copy_from_slice(b"xyz");
        header.tail_len = 3;
        header.record(captured)
    }

    #[test]
    fn decodes_a_data_record() {
        let rec = data_record(b"GET / HTTP/1.1\r\n", 100);
        let Ok(Event::Data(ev)) = Event::decode(&rec) else {
            panic!("not a data event")
        };
        assert_eq!(ev.data, b"GET / HTTP/1.1\r\n");
        assert_eq!(ev.tail, b"xyz");
        assert_eq!(ev.direction, Direction::Egress);
        assert_eq!(ev.header.tgid, 7);
    }

    #[test]
    fn rejects_short_and_corrupt_records() {
        let rec = data_record(b"GET / HTTP/1.1\r\n", 100);
        assert!(matches!(
            Event::decode(&rec[..20]),
            Err(DecodeError::Short { .. })
        ));
        assert!(matches!(
            Event::decode(&rec[..rec.len() - 1]),
            Err(DecodeError::Short { .. })
        ));
        assert_eq!(Event::decode(&[]).unwrap_err(), DecodeError::Empty);
        assert_eq!(
            Event::decode(&[99, 0, 0]).unwrap_err(),
            DecodeError::UnknownKind(99)
        );
        let rec = data_record(b"0123456789", 4);
        assert!(matches!(
            Event::decode(&rec),
            Err(DecodeError::BadField {
                field: "captured_len",
                ..
            })
        ));
    }
}
