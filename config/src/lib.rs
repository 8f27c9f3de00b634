//! Policy schema, parsing, validation and the embedded default.
