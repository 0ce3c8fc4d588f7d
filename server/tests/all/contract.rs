//! The admin API against its contract, `docs/admin-api.yaml` (OpenAPI
//! 3.1): schemathesis generates requests from the document, valid and
//! invalid, sends them to a live server and checks every answer's status,
//! headers and body against it (and that no answer is a 5xx).
//!
//! schemathesis is a Python tool: the test installs it and everything it
//! needs, pinned by hash (`server/tests/contract/requirements.txt`,
//! compiled from `requirements.in`), into a virtual environment under the
//! target directory once. Without Python 3 and its `venv` module it says
//! so and skips, unless `CI` is set (`.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Cases per operation in the generated phases: bounded, so the run takes
/// about a minute on two cores.
const EXAMPLES_PER_OPERATION: &str = "25";

/// The whole run's limit: past it the run is killed and the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's `st`, installed from the pinned requirements when missing or
/// stale; `None` when there is no Python to install it with.
fn schemathesis() -> Option<PathBuf> {
    let requirements = repo().join("server/tests/contract/requirements.txt");
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("contract-venv");
    let st = venv.join("bin/st");
    let installed = venv.join("requirements.txt");
    let wanted = std::fs::read(&requirements).expect("the pinned requirements");
    if st.exists() && std::fs::read(&installed).ok().as_deref() == Some(&wanted[..]) {
        return Some(st);
    }
    let venv_module = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output();
    if !venv_module.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 and its venv module are needed for the contract test"
        );
        eprintln!(
            "SKIPPED the admin API contract test: no python3 with venv (apt-get install python3 python3-venv)"
        );
        return None;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let run = |command: &mut Command| {
        let output = command.output().expect("runs");
        assert!(
            output.status.success(),
            "{command:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    run(Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--require-hashes",
            "-r",
        ])
        .arg(&requirements));
    std::fs::write(&installed, wanted).unwrap();
    Some(st)
}

#[test]
fn the_admin_api_keeps_its_openapi_contract() {
    let Some(st) = schemathesis() else {
        return;
    };
    // The demo: six tenants, and an operator token in demo-tokens.txt.
    let server = Server::start(tempfile::tempdir().unwrap(), "bid.cores = 1\n");
    let tokens = std::fs::read_to_string(server.data_dir.path().join("demo-tokens.txt")).unwrap();
    let operator = tokens
        .lines()
        .find_map(|line| line.strip_prefix("operator "))
        .expect("an operator token")
        .trim()
        .to_string();
    // Version 2 of fixed-cpm, stored and not live: the document's example
    // version, so that shadow, canary, activate and delete reach a real one.
    let stored = admin_call(
        &server,
        "POST",
        "/v1/tenants/fixed-cpm/versions?activate=false",
        &operator,
        gavel_strategies::example("fixed-cpm").unwrap(),
    );
    assert_eq!(stored.status, 201);

    let scratch = tempfile::tempdir().unwrap();
    let mut child = Command::new(st)
        .current_dir(scratch.path())
        .arg("run")
        .arg(repo().join("docs/admin-api.yaml"))
        .args(["--url", &format!("http://{}", server.admin)])
        .args(["--header", &format!("Authorization: Bearer {operator}")])
        // Every check but two that cannot hold here: a body that fits the
        // schema is not always accepted (a module must compile and bid, a
        // table's keys must be unique), and trial paths exist only while a
        // trial runs.
        .args(["--checks", "all"])
        .args([
            "--exclude-checks",
            "positive_data_acceptance,ensure_resource_availability",
        ])
        .args(["--max-examples", EXAMPLES_PER_OPERATION])
        .args(["--request-timeout", "30"])
        .args(["--seed", "7", "--no-color"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("schemathesis runs");
    // Output is read on threads so that a full pipe never stalls the run.
    let pipe = |mut reader: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = reader.read_to_end(&mut text);
            text
        })
    };
    let stdout = pipe(Box::new(child.stdout.take().unwrap()));
    let stderr = pipe(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("schemathesis ran past {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{report}");
    // Every operation in the document was tested.
    let selected = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Selected: "))
        .and_then(|s| s.split_once('/'))
        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()));
    let tested = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .map(|n| n.trim().to_string());
    match (selected, tested) {
        (Some((selected, all)), Some(tested)) => {
            assert_eq!(selected, all, "{report}");
            assert_eq!(tested, all, "{report}");
            assert!(all.parse::<u32>().unwrap() >= 30, "{report}");
        }
        _ => panic!("no summary in the report:\n{report}"),
    }
    server.stop();
}
