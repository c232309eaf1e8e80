//! QUIC links with mutual TLS from a per-site CA.
