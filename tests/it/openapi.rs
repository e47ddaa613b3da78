//! The HTTP API against its own OpenAPI document, as schemathesis (from
//! PyPI, pinned in `tests/openapi/requirements.txt`) tries it: generated
//! requests, valid and invalid, every default check, with the settings in
//! `tests/openapi/schemathesis.toml`. The test installs schemathesis into
//! `tests/openapi/.venv` when it is missing (needs python3 with venv).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Mode, TestRelay};

/// `tests/openapi`, with schemathesis installed in its `.venv`.
fn schemathesis() -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi");
    let venv = dir.join(".venv");
    let program = venv.join("bin/schemathesis");
    if !program.is_file() {
        let created = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs (install python3 and python3-venv)");
        assert!(
            created.success(),
            "python3 -m venv failed (install python3-venv)"
        );
        let installed = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "-r"])
            .arg(dir.join("requirements.txt"))
            .status()
            .expect("pip runs");
        assert!(installed.success(), "pip could not install schemathesis");
    }
    (program, dir)
}

#[test]
fn the_api_answers_as_its_openapi_document_says() {
    let (program, dir) = schemathesis();
    let token = "schemathesis-token";
    let relay = TestRelay::start_with(Mode::Embedded, &["--api-token", token]);
    let output = Command::new(&program)
        // Its cache goes beside its settings, not into the checkout's root.
        .current_dir(&dir)
        .arg("--config-file")
        .arg(dir.join("schemathesis.toml"))
        .args(["--no-color", "run"])
        .arg(format!("http://{}/api/v1/openapi.json", relay.addr))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // The same requests every run, so that a failure can be replayed.
        .args(["--seed", "1", "--max-examples", "100"])
        .output()
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}"
    );
    assert!(report.contains("No issues found"), "{report}");
}

/// docs/http-api.md has a section for every route and method of the
/// OpenAPI document (HEAD, which every GET route answers, aside), and for
/// none it lacks.
#[test]
fn the_http_api_reference_covers_the_openapi_document() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let document: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("src/transport/openapi.json")).unwrap(),
    )
    .unwrap();
    let reference = std::fs::read_to_string(root.join("docs/http-api.md")).unwrap();
    let mut documented = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        let methods = operations.as_object().unwrap().keys();
        for method in methods.filter(|method| *method != "head") {
            let heading = format!("### {} {path}", method.to_uppercase());
            assert!(
                reference.contains(&heading),
                "docs/http-api.md lacks {heading:?}"
            );
            documented.push(heading);
        }
    }
    let routes = reference.lines().filter(|line| {
        ["### GET ", "### POST ", "### PUT ", "### DELETE "]
            .iter()
            .any(|method| line.starts_with(method))
    });
    for route in routes {
        assert!(
            documented.iter().any(|heading| heading == route),
            "{route:?} is not in openapi.json"
        );
    }
}
