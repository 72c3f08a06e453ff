//! Golden files of the reports: `testdata/*.txt` hold them byte for byte; regenerate one on
//! purpose with `HERALD_BENCH_BLESS=1`.

/// Asserts `actual` is the content of `path` (or writes it there under `HERALD_BENCH_BLESS`).
pub(crate) fn assert_unchanged(path: &str, actual: &str) {
    if std::env::var_os("HERALD_BENCH_BLESS").is_some() {
        std::fs::write(path, actual).expect("write the expected reports");
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    assert!(actual == expected, "the reports changed; compare with {path}:\n{actual}");
}
