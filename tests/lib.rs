//! End-to-end suites live in `tests/`; this empty library only anchors the package.
