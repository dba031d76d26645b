use super::check_co_partitioned;
use crate::spec::{Spec, parse};

fn spec(text: &str) -> Spec<toml::Value> {
    parse::<toml::Value>(text, "test.toml", |_| Ok(())).expect("valid spec")
}

/// `group_by` keys -> whether the aggregate is accepted (its groups stay on one partition).
fn check(keys: &str, accepted: bool) {
    let s = spec(&format!(
        "[[aggregate]]\nname = \"a\"\nwindow = {{ type = \"tumbling\", size = \"1m\" }}\n\
         group_by = {keys}\nmeasures = {{ n = \"count(*)\" }}\n"
    ));
    let got = check_co_partitioned(&s.aggregates, &s.rules);
    assert_eq!(got.is_ok(), accepted, "{keys}: {got:?}");
    if let Err(e) = got {
        let text = e.to_string();
        assert!(
            text.contains("aggregate `a`") && text.contains("Add `subject`"),
            "{text}"
        );
    }
}

#[test]
fn only_groupings_that_include_the_subject_are_accepted() {
    check(r#"["subject"]"#, true);
    check(r#"["SUBJECT"]"#, true);
    check(r#"["subject AS project", "kind"]"#, true);
    check(r#"["kind", "attrs['branch'] AS branch", "subject"]"#, true);
    check(r#"[]"#, false);
    check(r#"["kind"]"#, false);
    check(r#"["lower(subject) AS project"]"#, false);
    check(r#"["attrs['subject'] AS subject"]"#, false);
}
