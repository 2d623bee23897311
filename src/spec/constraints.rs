//! The `constraints` field: an array of `{"attribute", "operator", "value"}` objects, walked by hand
//! so that every error names the item and the field (`constraints[1].operator`).

use super::*;
use crate::placement::{
    check_attribute, check_label_value, Constraint, MAX_CONSTRAINTS, OPERATORS,
};

pub(super) const CONSTRAINT_FIELDS: &[&str] = &["attribute", "operator", "value"];

/// Reads the `constraints` array of a task spec.
pub(super) fn constraints(v: &Json) -> Result<Vec<Constraint>, SpecError> {
    let Json::Array(items) = v else {
        return Err(wrong("constraints", "an array", v));
    };
    if items.len() > MAX_CONSTRAINTS {
        return Err(invalid(
            "constraints",
            format!(
                "constraints has {} items (at most {MAX_CONSTRAINTS})",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let place = format!("constraints[{i}]");
            let fields = as_object(item, &place)?;
            constraint(&Fields::new(place, fields))
        })
        .collect()
}

fn constraint(f: &Fields<'_>) -> Result<Constraint, SpecError> {
    f.deny_unknown(CONSTRAINT_FIELDS)?;
    let operator = f
        .str("operator")?
        .ok_or_else(|| SpecError::Missing(f.path("operator")))?;
    if operator == "distinct_hosts" {
        // It compares no attribute; a stray one would suggest the user meant something else.
        for key in ["attribute", "value"] {
            if f.get(key).is_some() {
                let path = f.path(key);
                return Err(invalid(
                    path.clone(),
                    format!("{path}: distinct_hosts takes no attribute or value"),
                ));
            }
        }
        return Ok(Constraint::DistinctHosts);
    }
    if !OPERATORS.contains(&operator) {
        let path = f.path("operator");
        return Err(invalid(
            path.clone(),
            format!(
                "{path}: unknown operator {operator:?} (valid: {})",
                OPERATORS.join(", ")
            ),
        ));
    }
    let attribute = f
        .str("attribute")?
        .ok_or_else(|| SpecError::Missing(f.path("attribute")))?;
    check_attribute(attribute).map_err(|e| {
        let path = f.path("attribute");
        invalid(path.clone(), format!("{path}: {e}"))
    })?;
    let attribute = attribute.to_string();
    let value = f
        .get("value")
        .ok_or_else(|| SpecError::Missing(f.path("value")))?;
    let path = f.path("value");
    let checked = |text: &str| -> Result<String, SpecError> {
        check_label_value(text)
            .map(|()| text.to_string())
            .map_err(|e| invalid(path.clone(), format!("{path}: {e}")))
    };
    match operator {
        "=" => Ok(Constraint::Equal {
            attribute,
            value: checked(as_str(value, &path)?)?,
        }),
        "!=" => Ok(Constraint::NotEqual {
            attribute,
            value: checked(as_str(value, &path)?)?,
        }),
        _ => {
            let values: Vec<String> = match value {
                Json::Str(text) => text
                    .split(',')
                    .map(|item| checked(item.trim()))
                    .collect::<Result<_, _>>()?,
                Json::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let text = as_str(item, &format!("{path}[{i}]"))?;
                        checked(text)
                    })
                    .collect::<Result<_, _>>()?,
                other => {
                    return Err(wrong(
                        &path,
                        "an array of strings or a comma-separated string",
                        other,
                    ))
                }
            };
            if values.is_empty() {
                return Err(invalid(
                    path.clone(),
                    format!("{path}: in needs at least one value"),
                ));
            }
            Ok(Constraint::In {
                attribute,
                value: values,
            })
        }
    }
}

/// Parses a `constraints` array given as JSON text, for other objects that carry constraints (a
/// service's) and want the same checks and messages as a task spec.
pub fn parse_constraints(body: &[u8]) -> Result<Vec<Constraint>, SpecError> {
    constraints(&read_json(body)?)
}

/// Checks constraints built by hand (not parsed), with the parser's messages.
pub(super) fn check_constraints(list: &[Constraint]) -> Result<(), SpecError> {
    if list.len() > MAX_CONSTRAINTS {
        return Err(invalid(
            "constraints",
            format!(
                "constraints has {} items (at most {MAX_CONSTRAINTS})",
                list.len()
            ),
        ));
    }
    for (i, c) in list.iter().enumerate() {
        let (attribute, values): (&str, Vec<&str>) = match c {
            Constraint::DistinctHosts => continue,
            Constraint::Equal { attribute, value } | Constraint::NotEqual { attribute, value } => {
                (attribute, vec![value.as_str()])
            }
            Constraint::In { attribute, value } => {
                (attribute, value.iter().map(String::as_str).collect())
            }
        };
        let at = |key: &str, e: String| {
            let path = format!("constraints[{i}].{key}");
            invalid(path.clone(), format!("{path}: {e}"))
        };
        check_attribute(attribute).map_err(|e| at("attribute", e))?;
        if values.is_empty() {
            return Err(at("value", "in needs at least one value".into()));
        }
        for v in values {
            check_label_value(v).map_err(|e| at("value", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(constraints: &str) -> Result<Vec<Constraint>, String> {
        let body = format!(r#"{{"image": "busybox", "constraints": {constraints}}}"#);
        parse_submission(body.as_bytes())
            .map(|s| s.spec.constraints.clone())
            .map_err(|e| e.to_string())
    }

    fn eq(attribute: &str, value: &str) -> Constraint {
        Constraint::Equal {
            attribute: attribute.into(),
            value: value.into(),
        }
    }

    fn one_of(attribute: &str, values: &[&str]) -> Constraint {
        Constraint::In {
            attribute: attribute.into(),
            value: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn every_operator_parses_and_in_takes_a_list_or_a_comma_separated_string() {
        let cases: Vec<(&str, Vec<Constraint>)> = vec![
            (
                r#"[{"attribute": "node.labels.disk", "operator": "=", "value": "ssd"}]"#,
                vec![eq("node.labels.disk", "ssd")],
            ),
            (
                r#"[{"attribute": "node.name", "operator": "!=", "value": "w2"}]"#,
                vec![Constraint::NotEqual {
                    attribute: "node.name".into(),
                    value: "w2".into(),
                }],
            ),
            (
                r#"[{"attribute": "node.labels.zone", "operator": "in", "value": ["a", "b"]}]"#,
                vec![one_of("node.labels.zone", &["a", "b"])],
            ),
            (
                r#"[{"attribute": "node.labels.zone", "operator": "in", "value": "a, b ,c"}]"#,
                vec![one_of("node.labels.zone", &["a", "b", "c"])],
            ),
            (
                r#"[{"operator": "distinct_hosts"}, {"attribute": "node.name", "operator": "=", "value": "w1"}]"#,
                vec![Constraint::DistinctHosts, eq("node.name", "w1")],
            ),
            ("[]", vec![]),
        ];
        for (text, expected) in cases {
            assert_eq!(parsed(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn a_bad_constraint_is_refused_with_a_message_naming_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                r#"[{"attribute": "node.labels.disk", "operator": "~", "value": "ssd"}]"#,
                r#"constraints[0].operator: unknown operator "~" (valid: =, !=, in, distinct_hosts)"#,
            ),
            (
                r#"[{"operator": "distinct_hosts"}, {"attribute": "node.cpus", "operator": "=", "value": "4"}]"#,
                r#"constraints[1].attribute: unknown attribute "node.cpus" (valid: node.name, node.labels.KEY)"#,
            ),
            (
                r#"[{"attribute": "node.labels.", "operator": "=", "value": "x"}]"#,
                r#"constraints[0].attribute: unknown attribute "node.labels.": the label key "" is not 1 to 63 letters, digits, '_', '.' or '-'"#,
            ),
            (
                r#"[{"attribute": "node.name", "operator": "="}]"#,
                "constraints[0].value is required",
            ),
            (
                r#"[{"operator": "=", "value": "x"}]"#,
                "constraints[0].attribute is required",
            ),
            (
                r#"[{"attribute": "node.name", "value": "x"}]"#,
                "constraints[0].operator is required",
            ),
            (
                r#"[{"attribute": "node.name", "operator": "=", "value": 3}]"#,
                "constraints[0].value must be a string, got a number",
            ),
            (
                r#"[{"attribute": "node.name", "operator": "=", "value": ""}]"#,
                r#"constraints[0].value: "" must be 1 to 255 bytes long"#,
            ),
            (
                r#"[{"attribute": "node.name", "operator": "in", "value": []}]"#,
                "constraints[0].value: in needs at least one value",
            ),
            (
                r#"[{"attribute": "node.name", "operator": "in", "value": "a,,b"}]"#,
                r#"constraints[0].value: "" must be 1 to 255 bytes long"#,
            ),
            (
                r#"[{"attribute": "node.name", "operator": "in", "value": {"a": 1}}]"#,
                "constraints[0].value must be an array of strings or a comma-separated string, got an object",
            ),
            (
                r#"[{"operator": "distinct_hosts", "attribute": "node.name"}]"#,
                "constraints[0].attribute: distinct_hosts takes no attribute or value",
            ),
            (
                r#"[{"operator": "=", "attribute": "node.name", "value": "a", "weight": 3}]"#,
                r#"unknown field "weight" in constraints[0] (valid: attribute, operator, value)"#,
            ),
            (
                r#"{"operator": "distinct_hosts"}"#,
                "constraints must be an array, got an object",
            ),
            (r#"["distinct_hosts"]"#, "constraints[0] must be an object, got a string"),
        ];
        for (text, message) in cases {
            assert_eq!(parsed(text), Err(message.to_string()), "{text}");
        }
    }

    #[test]
    fn validate_checks_constraints_built_by_hand() {
        let mut spec = match parse_submission(br#"{"image": "busybox"}"#) {
            Ok(s) => s.spec,
            Err(e) => panic!("{e}"),
        };
        spec.constraints = vec![Constraint::DistinctHosts, eq("node.kernel", "6")];
        assert_eq!(
            validate(&spec).map_err(|e| e.to_string()),
            Err(
                r#"constraints[1].attribute: unknown attribute "node.kernel" (valid: node.name, node.labels.KEY)"#
                    .to_string()
            )
        );
    }

    #[test]
    fn parse_constraints_reads_a_bare_array_for_other_objects() {
        assert_eq!(
            parse_constraints(br#"[{"operator": "distinct_hosts"}]"#).map_err(|e| e.to_string()),
            Ok(vec![Constraint::DistinctHosts])
        );
    }
}
