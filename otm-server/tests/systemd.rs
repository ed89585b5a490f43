//! The systemd unit in docs/systemd/ passes `systemd-analyze verify` with
//! its `ExecStart` pointed at this build's binary, and every `OTM_`
//! variable it sets is one otm-server reads. Skipped (with a reason) where
//! systemd-analyze is missing; not a service the tests need.

use std::path::Path;
use std::process::Command;

#[test]
fn the_systemd_unit_verifies() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/systemd/otm-server.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    let help = Command::new(env!("CARGO_BIN_EXE_otm-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for line in text.lines().filter(|l| {
        l.trim_start()
            .trim_start_matches('#')
            .starts_with("Environment=OTM_")
    }) {
        let name = line
            .split_once("Environment=")
            .unwrap()
            .1
            .split('=')
            .next()
            .unwrap();
        assert!(
            help.contains(&format!("[env: {name}")),
            "the unit sets {name}, which otm-server does not read"
        );
    }
    assert_eq!(
        text.matches("\nExecStart=/usr/local/bin/otm-server\n")
            .count(),
        1,
        "one ExecStart, at the documented path"
    );
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("otm-server.service");
    std::fs::write(
        &copy,
        text.replace(
            "\nExecStart=/usr/local/bin/otm-server\n",
            &format!("\nExecStart={}\n", env!("CARGO_BIN_EXE_otm-server")),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Only lines about this unit count: verify also loads the targets it
    // names, and a container without systemd running complains about those.
    let about_unit: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("otm-server.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}
