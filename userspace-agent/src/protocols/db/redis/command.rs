//! A client command: its arguments as captured, then its operation name (the command
//! table), its effect on the connection and the `CLIENT REPLY` mode it runs under.

use super::resp;
use crate::protocols::db::ParseOptions;

/// Longest command name accepted as such.
pub(super) const MAX_NAME: usize = 64;

/// Commands whose first argument is a subcommand, part of the operation name.
const CONTAINERS: [&str; 16] = [
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "LATENCY", "MEMORY", "MODULE",
    "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO", "DEBUG",
];

/// One argument as captured.
#[derive(Debug, Default)]
pub(super) struct Arg {
    pub(super) bytes: Vec<u8>,
    /// Some of its bytes were not kept (capture budget or a gap).
    pub(super) cut: bool,
}

/// A command whose bytes are still arriving.
#[derive(Debug)]
pub(super) struct Partial {
    pub(super) start_ns: u64,
    pub(super) args: Vec<Arg>,
    /// Arguments announced by the array header.
    pub(super) argc: u64,
    /// Arguments started so far (kept or not).
    pub(super) seen: u64,
    /// Bytes of argument payload still allowed in `args`.
    pub(super) budget: usize,
    /// An element that is not a bulk string: not a client command.
    pub(super) malformed: bool,
}

/// What a command's reply means for the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Effect {
    None,
    /// `SELECT n`: the namespace once it succeeds.
    Select(String),
    /// `HELLO <protover>`.
    Hello(Option<u8>),
    /// `(P|S)(UN)SUBSCRIBE`: confirmed by pushes, one per channel named; `None` for an
    /// unsubscribe from all, whose count is unknown.
    Subscribe {
        confirmations: Option<u64>,
        /// Timestamp of the last confirmation seen so far.
        confirmed_at: Option<u64>,
    },
    Monitor,
    Reset,
}

/// A complete command, waiting for its reply.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) start_ns: u64,
    pub(super) operation: String,
    pub(super) text: Option<String>,
    pub(super) effect: Effect,
    /// `CLIENT REPLY OFF/SKIP` in force: the server will not answer.
    pub(super) no_reply: bool,
}

/// The client's `CLIENT REPLY` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum ReplyMode {
    #[default]
    On,
    Off,
    SkipNext,
}

impl Partial {
    pub(super) fn new(start_ns: u64, opts: ParseOptions) -> Self {
        Self {
            start_ns,
            args: Vec::new(),
            argc: 0,
            seen: 0,
            // Enough for the text, plus the words the parser itself reads.
            budget: opts.max_query_text.saturating_add(2 * MAX_NAME),
            malformed: false,
        }
    }

    /// The command's name, operation, text and effect; `None` if it has no usable name.
    pub(super) fn into_pending(self, opts: ParseOptions, mode: &mut ReplyMode) -> Option<Pending> {
        let name_arg = self.args.first()?;
        if name_arg.cut
            || name_arg.bytes.is_empty()
            || !name_arg.bytes.iter().all(|&b| b.is_ascii_graphic())
        {
            return None;
        }
        let name = String::from_utf8_lossy(&name_arg.bytes).to_ascii_uppercase();
        let sub = self.arg_upper(1).filter(|s| {
            CONTAINERS.contains(&name.as_str())
                && !s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        let words = if sub.is_some() { 2 } else { 1 };
        let operation = match &sub {
            Some(sub) => format!("{name} {sub}"),
            None => name.clone(),
        };
        let redact_from = self.redact_from(&name, sub.as_deref());
        let effect = match (name.as_str(), sub.as_deref()) {
            ("SELECT", _) => self
                .arg_upper(1)
                .filter(|db| db.len() <= 10 && resp::parse_decimal(db.as_bytes()).is_some())
                .map_or(Effect::None, Effect::Select),
            ("HELLO", _) => Effect::Hello(self.arg_upper(1).and_then(|v| v.parse().ok())),
            (
                "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE"
                | "SUNSUBSCRIBE",
                _,
            ) => Effect::Subscribe {
                confirmations: (self.argc > 1).then(|| self.argc - 1),
                confirmed_at: None,
            },
            ("MONITOR", _) => Effect::Monitor,
            ("RESET", _) => Effect::Reset,
            _ => Effect::None,
        };
        let no_reply = if name == "CLIENT" && sub.as_deref() == Some("REPLY") {
            let setting = self.arg_upper(2);
            let (new_mode, silent) = match setting.as_deref() {
                Some("OFF") => (ReplyMode::Off, true),
                Some("SKIP") => (ReplyMode::SkipNext, true),
                Some("ON") => (ReplyMode::On, false),
                _ => (*mode, *mode != ReplyMode::On),
            };
            *mode = new_mode;
            silent
        } else {
            match *mode {
                ReplyMode::On => false,
                ReplyMode::Off => true,
                ReplyMode::SkipNext => {
                    *mode = ReplyMode::On;
                    true
                }
            }
        };
        let text = (opts.max_query_text > 0).then(|| self.text(words, redact_from, opts));
        Some(Pending {
            start_ns: self.start_ns,
            operation,
            text,
            effect,
            no_reply,
        })
    }

    /// Argument `i` upper-cased, if it was kept whole and is UTF-8.
    pub(super) fn arg_upper(&self, i: usize) -> Option<String> {
        let a = self.args.get(i).filter(|a| !a.cut)?;
        std::str::from_utf8(&a.bytes)
            .ok()
            .map(str::to_ascii_uppercase)
    }
}
