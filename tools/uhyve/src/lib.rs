//! uhyve: placeholder, being written.
