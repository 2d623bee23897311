//! The README's task JSON and cluster file examples, read from README.md itself: each must be
//! accepted as it stands and mean what the prose around it says (volumes, pull, host volumes and
//! registry credentials included).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use poseidon::task::{PullPolicy, Volume, VolumeSource};

#[path = "common/readme.rs"]
mod readme;
use readme::block;

#[test]
fn the_readme_task_example_is_accepted_with_its_volumes_and_pull_policy() {
    let sub = poseidon::spec::parse_submission(block("task-json", "json").as_bytes()).unwrap();
    assert_eq!(
        sub.spec.volumes,
        vec![
            Volume {
                source: VolumeSource::Named("web-data".into()),
                target: "/data".into(),
                read_only: false,
            },
            Volume {
                source: VolumeSource::HostVolume("logs".into()),
                target: "/var/log/nginx".into(),
                read_only: true,
            },
        ]
    );
    assert_eq!(sub.spec.pull, PullPolicy::Always);
    assert_eq!(sub.spec.image, "nginx:1.27");
}

#[test]
fn the_readme_config_example_is_accepted_with_host_volumes_and_registry_credentials() {
    let cfg = poseidon::config::parse(&block("config", "toml"), "README.md").unwrap();
    let w = cfg.worker("w1").unwrap();
    assert_eq!(
        w.host_volumes,
        BTreeMap::from([("logs".to_string(), PathBuf::from("/var/log/app"))])
    );
    assert_eq!(w.registry_auth.len(), 1);
    assert_eq!(w.registry_auth[0].registry, "registry.example:5000");
    assert_eq!(w.registry_auth[0].username, "deploy");
    assert_eq!(w.registry_auth[0].password, "change-me");
}
