//! What the span builder keeps per connection: nothing yet (bytes held while the
//! protocol is undecided), or the protocol's parser, the exchanges in flight and the
//! kernel's decisions waiting for their requests.

use super::marks::KernelMarks;
use super::pairing::Pairing;
use super::role::Role;
use super::semconv::Repeated;
use crate::capture::held::Held;
use crate::capture::{ConnState, TlsSource};
use crate::protocols::parser::Parser;
use crate::protocols::registry::Protocol;

/// A connection as the span builder knows it.
#[derive(Debug, Default)]
pub enum Session {
    /// No protocol recognised yet.
    #[default]
    Undetected,
    /// Its first bytes are too short to tell yet.
    Holding(Held),
    /// Bytes no protocol Sonde parses (counted once).
    Unknown,
    /// TLS ciphertext on the socket that no probed library call claimed (yet): skipped.
    /// Plaintext from a library's probes, when it comes, starts detection afresh.
    Encrypted,
    Active(Box<Active>),
}

/// A connection whose protocol and side are known.
pub struct Active {
    pub protocol: &'static Protocol,
    pub role: Role,
    pub parser: Box<dyn Parser>,
    pub pairing: Pairing,
    pub marks: KernelMarks,
    /// Attribute values its spans share.
    pub repeated: Repeated,
    /// The TLS library whose plaintext this connection's bytes are (None: the socket's
    /// own bytes, in the clear). Once set, the socket's own bytes are ciphertext, skipped.
    pub tls: Option<TlsSource>,
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Active")
            .field("protocol", &self.protocol)
            .field("role", &self.role)
            .field("pairing", &self.pairing)
            .finish_non_exhaustive()
    }
}

impl ConnState for Session {
    /// A server mid-response: its end may be a sendfile'd body folded into the socket's
    /// running total. A client's folded request body needs no read: the response that
    /// completes its span comes after it, carrying the total.
    fn awaits_folded_egress(&self) -> bool {
        matches!(self, Session::Active(a) if a.role == Role::Server && a.pairing.response_under_way())
    }
}
