//! RAFS v6 bootstrap reader.
