//! The node's HTTP API under generated input: schemathesis (PyPI; `.ci/run`
//! installs it, and without it the test prints a SKIP line) reads the node's
//! own `/openapi.json`, sends every operation valid and invalid requests, and
//! checks that no answer is a 5xx, that every answer matches the documented
//! schema, and — for the read-only operations — that every request valid by
//! the schema is accepted. Write operations (submit, send, mine, register,
//! resolve) are exempt from that last check only: a schema-valid transaction
//! can still carry a wrong signature, and the node must refuse it (with a
//! 4xx, which the other checks hold it to).

mod common;

use std::process::Command;

use common::*;

/// Runs schemathesis on one set of operations; its output on failure.
async fn run(bin: &std::path::Path, dir: &std::path::Path, url: &str, args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new(bin);
    // Its cache of failures goes to the test's own directory.
    cmd.current_dir(dir);
    cmd.args(["run", url, "--checks", "all", "--max-examples", "40", "--seed", "7", "--request-timeout", "20"])
        .args(args)
        .env("NO_COLOR", "1");
    let mut p = Proc::spawn("schemathesis", cmd);
    if p.wait_exit(DEADLINE).await { Ok(()) } else { Err(p.output().join("\n")) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_documented_answers_and_never_a_5xx() {
    let Some(bin) = find_program(&["schemathesis"]) else {
        println!(
            "SKIP generated_requests_get_documented_answers_and_never_a_5xx: schemathesis not found (pip install schemathesis)"
        );
        return;
    };
    let _one = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Not mining: /api/mine then finds blocks at the preset's first
    // difficulty, quickly.
    let node = Node::start("node", &dir.path().join("n"), &NodeOpts::default()).await;
    let url = format!("{}/openapi.json", node.http);
    if let Err(out) = run(&bin, dir.path(), &url, &["--include-method", "GET"]).await {
        panic!("read-only operations:\n{out}");
    }
    if let Err(out) =
        run(&bin, dir.path(), &url, &["--include-method", "POST", "--exclude-checks", "positive_data_acceptance"]).await
    {
        panic!("write operations:\n{out}");
    }
    // Still alive and serving.
    assert!(Api::default().status(&node.http).await.is_some(), "the node answers after the run");
}
