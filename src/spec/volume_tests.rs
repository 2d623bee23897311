//! Table tests of `volumes`, `pull`, and the node attributes host volumes require, through the
//! public API only. Expected values and messages are written out in full.
// A failed unwrap is how a test reports a broken expectation.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::task::{PullPolicy, Volume, VolumeSource};

fn parse(body: &str) -> TaskSpec {
    parse_submission(body.as_bytes())
        .unwrap_or_else(|e| panic!("{body}: {e}"))
        .spec
}

fn error(body: &str) -> (String, String) {
    match parse_submission(body.as_bytes()) {
        Ok(sub) => panic!("{body} was accepted as {sub:?}"),
        Err(e) => {
            let field = match &e {
                SpecError::Invalid { field, .. } | SpecError::WrongType { field, .. } => {
                    field.clone()
                }
                SpecError::UnknownField { field, place, .. } => format!("{place}:{field}"),
                SpecError::Missing(field) => field.clone(),
                other => format!("{other:?}"),
            };
            (field, e.to_string())
        }
    }
}

fn named(name: &str, target: &str, read_only: bool) -> Volume {
    Volume {
        source: VolumeSource::Named(name.into()),
        target: target.into(),
        read_only,
    }
}

fn host(name: &str, target: &str, read_only: bool) -> Volume {
    Volume {
        source: VolumeSource::HostVolume(name.into()),
        target: target.into(),
        read_only,
    }
}

#[test]
fn good_volumes_and_pull_values_map_to_the_expected_spec() {
    let cases: Vec<(&str, Vec<Volume>, PullPolicy)> = vec![
        (r#"{"image": "busybox"}"#, vec![], PullPolicy::Missing),
        (
            r#"{"image": "busybox", "volumes": [], "pull": "missing"}"#,
            vec![],
            PullPolicy::Missing,
        ),
        (
            r#"{"image": "busybox", "pull": "always"}"#,
            vec![],
            PullPolicy::Always,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "data", "target": "/data", "read_only": false}]}"#,
            vec![named("data", "/data", false)],
            PullPolicy::Missing,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"host_volume": "logs", "target": "/var/log/app", "read_only": true}]}"#,
            vec![host("logs", "/var/log/app", true)],
            PullPolicy::Missing,
        ),
        (
            r#"{"image": "busybox", "pull": null, "volumes": ["pg-data_1.x:/var/lib/pg", "cache:/cache:ro", "tmp9:/t:rw"]}"#,
            vec![
                named("pg-data_1.x", "/var/lib/pg", false),
                named("cache", "/cache", true),
                named("tmp9", "/t", false),
            ],
            PullPolicy::Missing,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "a1", "target": "/a"}, {"source": "a1", "target": "/a/b"}, {"host_volume": "x", "target": "/b/"}]}"#,
            vec![
                named("a1", "/a", false),
                named("a1", "/a/b", false),
                host("x", "/b/", false),
            ],
            PullPolicy::Missing,
        ),
    ];
    for (body, volumes, pull) in cases {
        let spec = parse(body);
        assert_eq!(spec.volumes, volumes, "{body}");
        assert_eq!(spec.pull, pull, "{body}");
    }
}

#[test]
fn bad_volumes_and_pull_values_are_refused_naming_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"image": "busybox", "pull": "never"}"#,
            "pull",
            r#"unknown pull "never" (valid: missing, always)"#,
        ),
        (
            r#"{"image": "busybox", "pull": true}"#,
            "pull",
            r#"pull must be "missing" or "always", got a boolean"#,
        ),
        (
            r#"{"image": "busybox", "volumes": {"source": "data"}}"#,
            "volumes",
            "volumes must be an array, got an object",
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "/var/run/docker.sock", "target": "/sock"}]}"#,
            "volumes[0].source",
            r#"volumes[0].source "/var/run/docker.sock" is a host path; host paths are not allowed in a task spec (name a host volume the worker's config lists, as {"host_volume": "logs", ...}, or a named volume)"#,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "data", "target": "/d"}, {"host_volume": "/etc", "target": "/etc"}]}"#,
            "volumes[1].host_volume",
            r#"volumes[1].host_volume "/etc" is a host path; host paths are not allowed in a task spec (name a host volume the worker's config lists, as {"host_volume": "logs", ...}, or a named volume)"#,
        ),
        (
            r#"{"image": "busybox", "volumes": ["/:/host"]}"#,
            "volumes[0].source",
            r#"volumes[0].source "/" is a host path; host paths are not allowed in a task spec (name a host volume the worker's config lists, as {"host_volume": "logs", ...}, or a named volume)"#,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "./data", "target": "/d"}]}"#,
            "volumes[0].source",
            r#"volumes[0].source "./data" is a host path; host paths are not allowed in a task spec (name a host volume the worker's config lists, as {"host_volume": "logs", ...}, or a named volume)"#,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "~", "target": "/d"}]}"#,
            "volumes[0].source",
            r#"volumes[0].source "~" is a host path; host paths are not allowed in a task spec (name a host volume the worker's config lists, as {"host_volume": "logs", ...}, or a named volume)"#,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "d", "target": "/d"}]}"#,
            "volumes[0].source",
            r#"invalid volume name "d" in volumes[0].source (Docker's rule: 2 to 255 characters, a letter or digit, then letters, digits, '_', '.' or '-')"#,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "-data", "target": "/d"}]}"#,
            "volumes[0].source",
            r#"invalid volume name "-data" in volumes[0].source (Docker's rule: 2 to 255 characters, a letter or digit, then letters, digits, '_', '.' or '-')"#,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "da ta", "target": "/d"}]}"#,
            "volumes[0].source",
            r#"invalid volume name "da ta" in volumes[0].source (Docker's rule: 2 to 255 characters, a letter or digit, then letters, digits, '_', '.' or '-')"#,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"host_volume": "lo gs", "target": "/d"}]}"#,
            "volumes[0].host_volume",
            r#"invalid volumes[0].host_volume "lo gs" (1 to 63 letters, digits, '_', '.' or '-')"#,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "data", "target": "data"}]}"#,
            "volumes[0].target",
            r#"volumes[0].target "data" must be an absolute path inside the container (starting with /)"#,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "data", "target": "/"}]}"#,
            "volumes[0].target",
            r#"volumes[0].target "/" is the container's root; mount a volume below it"#,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "data", "target": "/a/../etc"}]}"#,
            "volumes[0].target",
            r#"volumes[0].target "/a/../etc" must not contain a ".." component"#,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "data", "target": "/data"}, {"host_volume": "logs", "target": "//data/./"}]}"#,
            "volumes[1].target",
            r#"volumes[1].target "//data/./" is also the target of volumes[0]; each container path takes one volume"#,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "data"}]}"#,
            "volumes[0].target",
            "volumes[0].target is required",
        ),
        (
            r#"{"image": "busybox", "volumes": [{"target": "/d"}]}"#,
            "volumes[0].source",
            r#"volumes[0] needs source (a named volume) or host_volume (a host volume the worker allows) (examples: {"source": "data", "target": "/data"}, {"host_volume": "logs", "target": "/var/log/app", "read_only": true}, "data:/data:ro")"#,
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "data", "host_volume": "logs", "target": "/d"}]}"#,
            "volumes[0].host_volume",
            "volumes[0] takes either source (a named volume) or host_volume (a host volume the worker allows), not both",
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "data", "target": "/d", "read_only": "yes"}]}"#,
            "volumes[0].read_only",
            "volumes[0].read_only must be a boolean, got a string",
        ),
        (
            r#"{"image": "busybox", "volumes": [{"source": "data", "target": "/d", "host_path": "/etc"}]}"#,
            "volumes[0]:host_path",
            r#"unknown field "host_path" in volumes[0] (valid: source, host_volume, target, read_only)"#,
        ),
        (
            r#"{"image": "busybox", "volumes": ["data:/d:rx"]}"#,
            "volumes[0]",
            r#"invalid volume "data:/d:rx" in volumes[0] (NAME:/target, optionally :ro or :rw; examples: {"source": "data", "target": "/data"}, {"host_volume": "logs", "target": "/var/log/app", "read_only": true}, "data:/data:ro")"#,
        ),
        (
            r#"{"image": "busybox", "volumes": [7]}"#,
            "volumes[0]",
            r#"volumes[0] must be an object or a string such as "data:/data", got a number"#,
        ),
    ];
    for (body, field, message) in cases {
        assert_eq!(
            error(body),
            (field.to_string(), message.to_string()),
            "{body}"
        );
    }
}

#[test]
fn no_task_may_be_privileged_an_unknown_privileged_field_is_refused() {
    // There is no `privileged` field and there must never be one: a privileged container owns the
    // host, whatever the volume rules say.
    let (field, message) = error(r#"{"image": "busybox", "privileged": true}"#);
    assert_eq!(field, ":privileged");
    assert!(
        message.starts_with(r#"unknown field "privileged" (valid: "#),
        "{message}"
    );
    assert!(!message.contains("privileged,"), "{message}");
}

#[test]
fn a_go_task_with_docker_volume_fields_mounts_nothing_and_says_so() {
    let sub = parse_submission(
        br#"{"Name": "a", "Image": "busybox", "Binds": ["/etc:/etc"], "Volumes": {"/data": {}}}"#,
    )
    .unwrap();
    assert!(sub.spec.volumes.is_empty());
    assert_eq!(sub.spec.pull, PullPolicy::Missing);
    assert_eq!(
        sub.notes,
        vec![
            r#""Binds" is ignored: volumes are not part of the Go TaskEvent format, so nothing is mounted (Poseidon's JSON has "volumes")"#.to_string(),
            r#""Volumes" is ignored: volumes are not part of the Go TaskEvent format, so nothing is mounted (Poseidon's JSON has "volumes")"#.to_string(),
        ]
    );
}

#[test]
fn validate_refuses_a_hand_built_spec_with_a_host_path() {
    let mut spec = parse(r#"{"image": "busybox"}"#);
    spec.volumes = vec![named("/srv", "/srv", false)];
    assert_eq!(
        validate(&spec).unwrap_err().to_string(),
        r#"volumes[0].source "/srv" is a host path; host paths are not allowed in a task spec (name a host volume the worker's config lists, as {"host_volume": "logs", ...}, or a named volume)"#
    );
}

#[test]
fn a_spec_round_trips_through_its_stored_json_in_the_submitted_shape() {
    let spec = parse(
        r#"{"image": "busybox", "pull": "always", "volumes": [{"source": "data", "target": "/data"}, {"host_volume": "logs", "target": "/l", "read_only": true}]}"#,
    );
    let stored = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        stored["volumes"],
        serde_json::json!([
            {"source": "data", "target": "/data", "read_only": false},
            {"host_volume": "logs", "target": "/l", "read_only": true}
        ])
    );
    assert_eq!(stored["pull"], "always");
    let back: TaskSpec = serde_json::from_value(stored).unwrap();
    assert_eq!(back, spec);
    // The default policy is left out, so records written before the field read back the same.
    let plain = serde_json::to_value(parse(r#"{"image": "busybox"}"#)).unwrap();
    assert!(plain.get("pull").is_none() && plain.get("volumes").is_none());
}

#[test]
fn host_volumes_become_the_node_attributes_a_placement_requires() {
    let spec = parse(
        r#"{"image": "busybox", "volumes": [{"host_volume": "logs", "target": "/a"}, {"source": "data", "target": "/b"}, {"host_volume": "scratch", "target": "/c"}, {"host_volume": "logs", "target": "/d"}]}"#,
    );
    assert_eq!(
        required_node_attributes(&spec),
        vec![
            "node.host_volume.logs".to_string(),
            "node.host_volume.scratch".to_string()
        ]
    );
    assert!(required_node_attributes(&parse(r#"{"image": "busybox"}"#)).is_empty());
    assert_eq!(
        offered_node_attributes(["logs", "scratch"]),
        BTreeMap::from([
            ("node.host_volume.logs".to_string(), "true".to_string()),
            ("node.host_volume.scratch".to_string(), "true".to_string()),
        ])
    );
}
