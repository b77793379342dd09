//! Every compile error `#[listener]` promises, pinned as a snapshot.
//! Regenerate with `TRYBUILD=overwrite cargo test -p mq-ui-tests`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("pass/*.rs");
    t.compile_fail("fail/*.rs");
}
