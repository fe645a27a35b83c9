//! Where finished spans go: the terminal printer, JSON lines, and later OTLP and the store.
