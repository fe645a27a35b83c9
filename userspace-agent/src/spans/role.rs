//! Which side of a connection the traced process is on.
//!
//! Decided from the bytes, not from accept or connect, so connections that were open
//! before the agent attached are traced too: a process that reads a request is the
//! server, one that writes a request the client.

use super::model::SpanKind;
use crate::abi::Direction;
use crate::protocols::parser::Side;

/// Which side of the protocol the traced process is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

impl Role {
    pub fn kind(self) -> SpanKind {
        match self {
            Role::Server => SpanKind::Server,
            Role::Client => SpanKind::Client,
        }
    }

    /// Does this direction carry requests for this role?
    pub fn carries_requests(self, dir: Direction) -> bool {
        matches!(
            (self, dir),
            (Role::Server, Direction::Ingress) | (Role::Client, Direction::Egress)
        )
    }

    /// The role of a process that moved, in `dir`, bytes that `sender` sends.
    pub fn of_process(dir: Direction, sender: Side) -> Role {
        match (dir, sender) {
            (Direction::Egress, Side::Client) | (Direction::Ingress, Side::Server) => Role::Client,
            (Direction::Egress, Side::Server) | (Direction::Ingress, Side::Client) => Role::Server,
        }
    }

    /// Which peer sent bytes moving in `dir`.
    pub fn sender(self, dir: Direction) -> Side {
        if self.carries_requests(dir) {
            Side::Client
        } else {
            Side::Server
        }
    }
}
