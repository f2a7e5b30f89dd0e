//! The node's container image (`deploy/Containerfile`) and the Compose
//! network (`deploy/compose.yaml`), built and run with Podman on this
//! machine.
//!
//! This machine reaches no container registry, so the test makes its own
//! base: a minimal Debian root filesystem from Debian's packages
//! (`debootstrap --variant=minbase`), imported as a local image (kept
//! between runs as `localhost/toy-base:bookworm`), then the real
//! Containerfile is built `FROM` it with the examples already built by
//! `cargo test` (stripped of debug info). Two containers on a bridge network
//! of their own, each with its own address: the second peers with the
//! first, the first mines; the test checks the health check, that the node
//! runs as a user that is not root, that settings come from the
//! environment, and that the chain in the volume survives a restart.
//!
//! Podman runs with `--runtime runc --cgroup-manager cgroupfs` and a
//! containers.conf without default ulimits (crun and the default cgroup
//! handling fail on this kind of machine). Root only, with `podman`,
//! `runc` and `debootstrap`; otherwise a SKIP line (`.ci/run` installs
//! them and runs as root).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const BASE: &str = "localhost/toy-base:bookworm";
/// What Podman needs on this kind of machine, for the commands the tests
/// run and for those podman-compose runs.
const CONTAINERS_CONF: &str =
    "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n";
const PROGRAMS: [&str; 6] = ["node", "oracle", "tracker", "relay", "wallet", "adversary"];

/// Podman with the flags this machine needs.
struct Podman {
    conf: PathBuf,
}

impl Podman {
    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &self.conf).args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
        c
    }

    /// Runs `podman args…`; its output (not checked).
    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
    }

    /// Runs `podman args…` and fails the test unless it succeeds; stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// What the test made, removed however it ends.
struct Cleanup<'a> {
    podman: &'a Podman,
    containers: Vec<String>,
    volumes: Vec<String>,
    network: String,
    image: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.podman.run(&["rm", "-f", "-t", "2", c]);
        }
        for v in &self.volumes {
            let _ = self.podman.run(&["volume", "rm", "-f", v]);
        }
        let _ = self.podman.run(&["network", "rm", "-f", &self.network]);
        let _ = self.podman.run(&["rmi", "-f", &self.image]);
    }
}

/// A scratch directory with this machine's containers.conf and Podman set
/// to use it, or `None` after a SKIP line naming `test` when root or a
/// program (podman, runc, debootstrap, and `more`) is missing.
fn ready(test: &str, more: &[&'static str]) -> Option<(tempfile::TempDir, Podman)> {
    let missing: Vec<&str> = ["podman", "runc", "debootstrap"]
        .iter()
        .chain(more)
        .copied()
        .filter(|p| find_program(&[p]).is_none())
        .collect();
    if !root() || !missing.is_empty() {
        println!(
            "SKIP {test}: needs root and {missing:?} (apt install podman runc debootstrap netavark iptables \
             catatonit; pip install podman-compose)"
        );
        return None;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let conf = scratch.path().join("containers.conf");
    std::fs::write(&conf, CONTAINERS_CONF).expect("containers.conf");
    Some((scratch, Podman { conf }))
}

fn root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The base image: imported once from a debootstrapped Debian.
fn base_image(podman: &Podman, scratch: &Path) {
    if podman.run(&["image", "exists", BASE]).status.success() {
        return;
    }
    let rootfs = scratch.join("rootfs");
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&rootfs)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("debootstrap");
    assert!(out.status.success(), "debootstrap failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let tar = Command::new("tar").arg("-C").arg(&rootfs).args(["-c", "."]).stdout(std::process::Stdio::piped()).spawn();
    let mut tar = tar.expect("tar");
    let import = podman
        .cmd()
        .args(["import", "-", BASE])
        .stdin(tar.stdout.take().expect("tar's output"))
        .output()
        .expect("podman import");
    assert!(tar.wait().is_ok_and(|s| s.success()), "tar of the root filesystem failed");
    assert!(import.status.success(), "import failed: {}", String::from_utf8_lossy(&import.stderr));
}

/// The build context: `bin/` with the examples, debug info stripped.
fn context(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    for p in PROGRAMS {
        let from = example(p);
        assert!(from.exists(), "{} is not built (cargo build --examples)", from.display());
        let to = bin.join(p);
        let stripped = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&to)
            .arg(&from)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(&from, &to).expect("copy");
        }
    }
}

/// Builds `deploy/Containerfile` from [`BASE`] as `image`.
fn build_image(podman: &Podman, scratch: &Path, image: &str) {
    let ctx = scratch.join("ctx");
    context(&ctx);
    let containerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/Containerfile");
    // Docker's image format: OCI's has no HEALTHCHECK.
    podman.ok(&[
        "build",
        "--format",
        "docker",
        "--build-arg",
        &format!("BASE={BASE}"),
        "-f",
        &containerfile.to_string_lossy(),
        "-t",
        image,
        &ctx.to_string_lossy(),
    ]);
}

async fn status(http: &reqwest::Client, ip: &str) -> Option<serde_json::Value> {
    let r = http.get(format!("http://{ip}:8080/api/status")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_a_non_root_node_that_peers_heals_and_keeps_its_chain() {
    let test = "the_image_runs_a_non_root_node_that_peers_heals_and_keeps_its_chain";
    let Some((scratch, podman)) = ready(test, &[]) else { return };
    let _one = SERIAL.lock().await;
    base_image(&podman, scratch.path());

    let tag = format!("{}-{}", std::process::id(), rand::random::<u16>());
    let image = format!("localhost/toy:test-{tag}");
    let network = format!("toy-test-{tag}");
    let mut made = Cleanup { podman: &podman, containers: vec![], volumes: vec![], network: network.clone(), image };
    build_image(&podman, scratch.path(), &made.image);
    // Not root, a health check, a volume.
    let user = podman.ok(&["image", "inspect", "-f", "{{.Config.User}}", &made.image.clone()]);
    assert_eq!(user, "toy");
    let health = podman.ok(&["image", "inspect", "-f", "{{.Config.Healthcheck}}", &made.image.clone()]);
    assert!(health.contains("/api/status"), "health check: {health}");
    let size = |image: &str| podman.ok(&["image", "inspect", "-f", "{{.Size}}", image]).parse::<u64>().unwrap_or(0);
    println!(
        "image size: {:.1} MB, of which the base {BASE} is {:.1} MB",
        size(&made.image) as f64 / 1e6,
        size(BASE) as f64 / 1e6
    );

    // A bridge network of the test's own, each container at its own
    // address (announced to its peers through TOY_ADVERTISE).
    let subnet = 100 + rand::random::<u8>() % 100;
    podman.ok(&["network", "create", "--subnet", &format!("10.89.{subnet}.0/24"), &network]);
    let start = |name: &str, ip: &str, env: &[String], made: &mut Cleanup<'_>| {
        let volume = format!("{name}-data");
        made.containers.push(name.to_owned());
        made.volumes.push(volume.clone());
        let mut args: Vec<String> = ["run", "-d", "--name", name, "--network", &network, "--ip", ip, "-v"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        args.push(format!("{volume}:/data"));
        for e in env.iter().cloned().chain([format!("TOY_ADVERTISE={ip}:15151")]) {
            args.extend(["-e".to_owned(), e]);
        }
        args.push(made.image.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        podman.ok(&args);
    };
    let (seed, seed_ip) = (format!("toy-seed-{tag}"), format!("10.89.{subnet}.10"));
    start(&seed, &seed_ip, &["TOY_THREADS=1".into()], &mut made);
    // The second follows: settings from the environment only.
    let (follower, follower_ip) = (format!("toy-follower-{tag}"), format!("10.89.{subnet}.11"));
    start(&follower, &follower_ip, &["TOY_NO_MINE=true".into(), format!("TOY_PEER={seed_ip}:15151")], &mut made);

    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    // Healthy by its own check; the process is not root.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !podman.run(&["healthcheck", "run", &seed]).status.success() {
        assert!(tokio::time::Instant::now() < deadline, "the seed never became healthy");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let uid = podman.ok(&["exec", &seed, "id", "-u"]);
    assert_ne!(uid, "0", "the node runs as a user of its own");
    // The follower peers with the seed and follows its chain.
    wait_for("the follower peers with the seed and reaches height 3", || {
        let http = http.clone();
        let (f, s) = (follower_ip.clone(), seed_ip.clone());
        async move {
            let (Some(fs), Some(_)) = (status(&http, &f).await, status(&http, &s).await) else { return false };
            fs["peers"].as_u64().unwrap_or(0) >= 1 && fs["height"].as_u64().unwrap_or(0) >= 3
        }
    })
    .await;
    // The chain is in the volume: a restart keeps it.
    let before = status(&http, &seed_ip).await.and_then(|s| s["height"].as_u64()).expect("height");
    podman.ok(&["restart", "-t", "10", &seed]);
    wait_for("the restarted seed answers with its chain", || {
        let (http, ip) = (http.clone(), seed_ip.clone());
        async move { status(&http, &ip).await.and_then(|s| s["height"].as_u64()).is_some_and(|h| h >= before) }
    })
    .await;
    // The API reached from another host needs its token for writes: the
    // cookie is in the volume, readable by the node's user only.
    let mode = podman.ok(&["exec", &seed, "stat", "-c", "%a %U", "/data/api.cookie"]);
    assert_eq!(mode, "600 toy", "the API token file");
    drop(made);
}

/// Runs `podman-compose -p project -f deploy/compose.yaml args…` with the
/// image and ports the test chose; its output, and whether it succeeded.
fn compose(conf: &Path, project: &str, image: &str, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/compose.yaml");
    let mut c = Command::new("podman-compose");
    c.env("CONTAINERS_CONF", conf).env("TOY_IMAGE", image).args(["-p", project, "-f"]).arg(&file).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("podman-compose");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The project's containers, volumes and network, removed however the test
/// ends.
struct Project<'a> {
    podman: &'a Podman,
    conf: PathBuf,
    name: String,
    image: String,
}

impl Drop for Project<'_> {
    fn drop(&mut self) {
        let _ = compose(&self.conf, &self.name, &self.image, &[], &["--profile", "oracle", "down", "-v", "-t", "2"]);
        let _ = self.podman.run(&["network", "rm", "-f", &format!("{}_default", self.name)]);
        let _ = self.podman.run(&["rmi", "-f", &self.image]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_network_takes_the_oracles_transfers_and_verifies_again_after_a_kill() {
    let test = "a_compose_network_takes_the_oracles_transfers_and_verifies_again_after_a_kill";
    let Some((scratch, podman)) = ready(test, &["podman-compose"]) else { return };
    let conf = podman.conf.clone();
    let _one = SERIAL.lock().await;
    base_image(&podman, scratch.path());
    let tag = format!("{}-{}", std::process::id(), rand::random::<u16>());
    let project = Project {
        podman: &podman,
        conf: conf.clone(),
        name: format!("toyct{}", tag.replace('-', "")),
        image: format!("localhost/toy:compose-{tag}"),
    };
    build_image(&podman, scratch.path(), &project.image);
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port().to_string();
    let env = [("TOY_WEB_PORT", port.as_str()), ("TOY_ORACLE_COUNT", "30")];
    let started = std::time::Instant::now();
    let (up, out) = compose(&conf, &project.name, &project.image, &env, &["up", "-d"]);
    assert!(up, "compose up failed:\n{out}");

    // The seed's web wallet on localhost; the others found it by name.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the seed has its three peers and a few blocks", || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let Ok(r) = http.get(format!("{base}/api/status")).send().await else { return false };
            let Ok(s) = r.json::<serde_json::Value>().await else { return false };
            s["peers"].as_u64().unwrap_or(0) >= 3 && s["height"].as_u64().unwrap_or(0) >= 3
        }
    })
    .await;
    println!(
        "compose up to a peered network mining (seed: 3 peers, height 3): {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The oracle's transfers, then its check of every node.
    let verified = |out: &str| out.contains("verified 4 nodes") && out.contains("all match the ledger");
    let (ok, out) =
        compose(&conf, &project.name, &project.image, &env, &["--profile", "oracle", "run", "--rm", "oracle"]);
    assert!(ok && verified(&out), "the oracle did not verify:\n{out}");
    println!("compose up to 4 nodes synced and verified by the oracle: {:.1} s", started.elapsed().as_secs_f64());

    // kill -9 one mining container, start it again, and verify again (the
    // oracle's ledger is in its volume).
    let miner = format!("{}_miner_1", project.name);
    podman.ok(&["kill", "-s", "KILL", &miner]);
    podman.ok(&["start", &miner]);
    let env = [("TOY_WEB_PORT", port.as_str()), ("TOY_ORACLE_COUNT", "10")];
    let (ok, out) =
        compose(&conf, &project.name, &project.image, &env, &["--profile", "oracle", "run", "--rm", "oracle"]);
    assert!(ok && verified(&out), "after the restart the oracle did not verify:\n{out}");
    for line in out.lines().filter(|l| l.starts_with("oracle:")) {
        println!("{line}");
    }
    drop(project);
}

/// What a kubelet does with one replica of a StatefulSet: its pod template
/// as a Pod named `<set>-0`, each `$(VAR)` in an env value expanded from the
/// pod's own name, and each volume claim template as a claim
/// `<claim>-<set>-0` that the Pod mounts. `podman kube play` takes Pods and
/// claims (not StatefulSets or Services).
fn first_replica(set: &serde_yaml::Value) -> String {
    use serde_yaml::Value;
    let name = set["metadata"]["name"].as_str().expect("a StatefulSet's name");
    let pod_name = format!("{name}-0");
    let template = &set["spec"]["template"];
    let mut spec = template["spec"].clone();
    let mut docs = Vec::new();
    let mut volumes = Vec::new();
    for claim in set["spec"]["volumeClaimTemplates"].as_sequence().into_iter().flatten() {
        let claim_name = claim["metadata"]["name"].as_str().expect("claim name");
        let pvc = format!("{claim_name}-{pod_name}");
        let mut doc = serde_yaml::Mapping::new();
        doc.insert("apiVersion".into(), "v1".into());
        doc.insert("kind".into(), "PersistentVolumeClaim".into());
        doc.insert("metadata".into(), serde_yaml::from_str(&format!("{{name: {pvc}}}")).expect("metadata"));
        doc.insert("spec".into(), claim["spec"].clone());
        docs.push(Value::Mapping(doc));
        volumes.push(
            serde_yaml::from_str::<Value>(&format!(
                "{{name: {claim_name}, persistentVolumeClaim: {{claimName: {pvc}}}}}"
            ))
            .expect("volume"),
        );
    }
    for c in spec["containers"].as_sequence_mut().into_iter().flatten() {
        for e in c["env"].as_sequence_mut().into_iter().flatten() {
            if let Some(v) = e["value"].as_str() {
                e["value"] = Value::String(v.replace("$(POD_NAME)", &pod_name));
            }
        }
    }
    spec["volumes"] = Value::Sequence(volumes);
    let mut pod = serde_yaml::Mapping::new();
    pod.insert("apiVersion".into(), "v1".into());
    pod.insert("kind".into(), "Pod".into());
    let mut meta = serde_yaml::Mapping::new();
    meta.insert("name".into(), pod_name.into());
    meta.insert("labels".into(), template["metadata"]["labels"].clone());
    pod.insert("metadata".into(), Value::Mapping(meta));
    pod.insert("spec".into(), spec);
    docs.push(Value::Mapping(pod));
    docs.iter().map(|d| serde_yaml::to_string(d).expect("yaml")).collect::<Vec<_>>().join("---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_pod_template_plays_under_podman_and_mines() {
    let test = "the_kubernetes_pod_template_plays_under_podman_and_mines";
    let Some((scratch, podman)) = ready(test, &[]) else { return };
    let _one = SERIAL.lock().await;
    base_image(&podman, scratch.path());
    let tag = format!("{}-{}", std::process::id(), rand::random::<u16>());
    let image = format!("localhost/toy:kube-{tag}");
    build_image(&podman, scratch.path(), &image);

    // The manifests parse, with the kinds a cluster needs.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s/toy.yaml")).expect("read");
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .collect();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["Service", "Service", "StatefulSet", "StatefulSet"]);
    assert!(docs[0]["spec"]["clusterIP"].as_str() == Some("None"), "the bootstrap Service is headless");
    let miners = docs.iter().find(|d| d["metadata"]["name"] == "toy-miner").expect("the miners");

    // The first miner's pod, on this image, as podman kube play runs it.
    let played = first_replica(miners).replace("localhost/toy:latest", &image);
    let file = scratch.path().join("toy-miner-0.yaml");
    std::fs::write(&file, &played).expect("write");
    let file = file.to_string_lossy().into_owned();
    struct Down<'a>(&'a Podman, String, String);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = self.0.run(&["kube", "down", &self.1]);
            let _ = self.0.run(&["volume", "rm", "-f", "data-toy-miner-0"]);
            let _ = self.0.run(&["rmi", "-f", &self.2]);
        }
    }
    let _down = Down(&podman, file.clone(), image.clone());
    podman.ok(&["kube", "play", &file]);
    let container = "toy-miner-0-node";
    let ip = podman.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", container]);
    let ip = if ip.is_empty() {
        podman.ok(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container])
    } else {
        ip
    };
    // The readiness probe's request answers; the node mines into the claim.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    wait_for("the pod's node answers its probe and has mined", || {
        let (http, ip) = (http.clone(), ip.clone());
        async move { status(&http, &ip).await.is_some_and(|s| s["height"].as_u64().unwrap_or(0) >= 2) }
    })
    .await;
    let uid = podman.ok(&["exec", container, "id", "-u"]);
    assert_ne!(uid, "0", "runAsNonRoot holds");
    let advertised = podman.ok(&["exec", container, "printenv", "TOY_ADVERTISE"]);
    assert_eq!(advertised, "toy-miner-0.toy:15151", "the stable name it announces");
    let mounts = podman.ok(&["inspect", "-f", "{{range .Mounts}}{{.Name}} {{.Destination}};{{end}}", container]);
    assert!(mounts.contains("data-toy-miner-0 /data"), "the claim is its volume: {mounts}");
}
