//! Deploy files, checked without a cluster or a docker engine: the
//! Kubernetes base (`deploy/kubernetes/`, rendered here as kustomize would:
//! its resources, the generated ConfigMap, the image tag), the compose file
//! (`deploy/docker-compose.yml`) and the `Dockerfile`, read as YAML and text
//! and held against each other and against the config they carry: probe
//! paths and ports, the image's user, the drain on shutdown, resources, the
//! disruption budget and the autoscaler, every file a service mounts; and
//! the Dockerfile builds the binary the README builds, with the same cargo
//! profile and flags. When `kubectl` is on the PATH, its own rendering of
//! the base is compared with this one.

use crate::harness::repo_path;
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use tokengate::config::Config;

/// `shutdown.grace_period_ms` when the config does not set it.
const DEFAULT_GRACE_PERIOD_MS: u64 = 30_000;

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_path(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// Every document of a YAML file.
fn yaml_documents(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The value at a dotted path (`spec.template.spec`); `Null` when absent.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    path.split('.')
        .try_fold(value, |v, key| v.get(key))
        .unwrap_or(&NULL)
}

fn text<'a>(value: &'a Value, path: &str) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string in {value:?}"))
}

/// A ConfigMap's file `key` (keys contain dots: not a path for [`at`]).
fn data<'a>(configmap: &'a Value, key: &str) -> &'a str {
    at(configmap, "data")
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("the ConfigMap has no file `{key}`"))
}

fn number(value: &Value, path: &str) -> u64 {
    at(value, path)
        .as_u64()
        .unwrap_or_else(|| panic!("`{path}` is not a number in {value:?}"))
}

fn list<'a>(value: &'a Value, path: &str) -> &'a [Value] {
    at(value, path).as_sequence().map_or(&[], Vec::as_slice)
}

/// The element of the list at `path` whose `name` is `name`.
fn named<'a>(value: &'a Value, path: &str, name: &str) -> &'a Value {
    list(value, path)
        .iter()
        .find(|item| item.get("name").and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no `{name}` in `{path}`"))
}

/// A deploy config, validated by this build's config code, and the YAML it
/// was read from. Secrets the config names under `/run/secrets/` (mounted
/// there in a container) are stood in for by files of a temp dir, so that
/// validation, which reads them, runs here.
fn validated_config(name: &str, text: &str, base_dir: &Path) -> (Config, Value) {
    let value: Value = serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let secrets = tempfile::tempdir().unwrap();
    let mut local = text.to_owned();
    let mut rest = text;
    while let Some(at) = rest.find("/run/secrets/") {
        let path: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
            .collect();
        let stand_in = secrets.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(stand_in.parent().unwrap()).unwrap();
        std::fs::write(&stand_in, "example-secret\n").unwrap();
        local = local.replace(&path, &stand_in.display().to_string());
        rest = &rest[at + path.len()..];
    }
    let config = Config::from_yaml(&local, base_dir)
        .unwrap_or_else(|problems| panic!("{name} is not a valid config: {problems:#?}"));
    (config, value)
}

fn grace_period_ms(config: &Value) -> u64 {
    at(config, "shutdown.grace_period_ms")
        .as_u64()
        .unwrap_or(DEFAULT_GRACE_PERIOD_MS)
}

fn drain_delay_ms(config: &Value) -> u64 {
    at(config, "shutdown.drain_delay_ms").as_u64().unwrap_or(0)
}

// ---- Dockerfile -------------------------------------------------------------

/// One `FROM` stage: its base image, its name, and its instructions
/// (continuation lines joined, comments dropped).
#[derive(Debug)]
struct Stage {
    base: String,
    name: Option<String>,
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all<'a>(&'a self, instruction: &str) -> impl Iterator<Item = &'a str> + 'a {
        let instruction = instruction.to_owned();
        self.instructions
            .iter()
            .filter(move |(i, _)| *i == instruction)
            .map(|(_, args)| args.as_str())
    }

    fn one(&self, instruction: &str) -> &str {
        let found: Vec<&str> = self.all(instruction).collect();
        assert_eq!(found.len(), 1, "one {instruction} in stage {:?}", self.name);
        found[0]
    }
}

fn dockerfile() -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut pending = String::new();
    for line in read("Dockerfile").lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let whole = std::mem::take(&mut pending);
        let (instruction, args) = whole.split_once(' ').unwrap_or((&whole, ""));
        let (instruction, args) = (instruction.to_ascii_uppercase(), args.trim().to_owned());
        if instruction == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                [_] => None,
                _ => panic!("Dockerfile: FROM {args}: expected `FROM image [AS name]`"),
            };
            stages.push(Stage {
                base: words[0].to_owned(),
                name,
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("Dockerfile: an instruction before the first FROM")
                .instructions
                .push((instruction, args));
        }
    }
    stages
}

/// The stage a `docker build` without `--target` produces: the last.
fn runtime_stage(stages: &[Stage]) -> &Stage {
    stages.last().expect("Dockerfile has no stage")
}

fn stage<'a>(stages: &'a [Stage], name: &str) -> &'a Stage {
    stages
        .iter()
        .find(|s| s.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("Dockerfile has no stage `{name}`"))
}

/// The runtime image's `USER uid:gid`, numeric (so that `runAsNonRoot` can
/// check it).
fn image_user() -> (u64, u64) {
    let stages = dockerfile();
    let user = runtime_stage(&stages).one("USER");
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    let parse = |id: &str| {
        id.parse::<u64>()
            .unwrap_or_else(|_| panic!("Dockerfile: USER {user} must be numeric (uid:gid)"))
    };
    let (uid, gid) = (parse(uid), parse(gid));
    assert_ne!(uid, 0, "Dockerfile: the runtime image must not run as root");
    (uid, gid)
}

/// A JSON-array instruction (`ENTRYPOINT ["a", "b"]`) as its words.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("`{args}` is not an exec-form JSON array: {e}"))
}

/// The port of `--listen ADDR` in `args`, if given.
fn listen_flag_port(args: &[String]) -> Option<u16> {
    let at = args.iter().position(|a| a == "--listen")?;
    let addr: std::net::SocketAddr = args[at + 1].parse().expect("--listen IP:PORT");
    Some(addr.port())
}

/// `cargo build|run|install …` command lines in `text`.
fn cargo_commands(text: &str) -> Vec<String> {
    let mut commands = Vec::new();
    for line in text.lines() {
        let mut rest = line;
        while let Some(at) = rest.find("cargo ") {
            let command: String = rest[at..]
                .split(['&', ';', '`', '#', '|'])
                .next()
                .unwrap()
                .trim()
                .to_owned();
            if ["cargo build", "cargo run", "cargo install"]
                .iter()
                .any(|c| command.starts_with(c))
            {
                commands.push(command);
            }
            rest = &rest[at + 6..];
        }
    }
    commands
}

#[test]
fn the_dockerfile_builds_the_binary_the_readme_builds_with_the_same_profile_and_flags() {
    let stages = dockerfile();
    let runtime = runtime_stage(&stages);
    // The runtime image is the release `tokengate` binary from the builder.
    let copied: Vec<&str> = runtime.all("COPY").collect();
    assert!(
        copied.contains(&"--from=builder /out/tokengate /usr/local/bin/tokengate"),
        "the runtime stage copies the builder's binary: {copied:?}"
    );
    let builder = stage(&stages, "builder");
    let run = builder.one("RUN");
    let builds = cargo_commands(run);
    assert_eq!(
        builds,
        ["cargo build --release --locked --bin tokengate"],
        "the builder builds exactly the tokengate binary in the release profile"
    );
    assert!(
        run.contains("target/release/tokengate /out/tokengate"),
        "the builder installs target/release/tokengate: {run}"
    );

    // The README builds the same binary in the same profile, with no extra
    // features or flags; the Dockerfile changes none of them either.
    let readme = read("README.md");
    let readme_builds = cargo_commands(&readme);
    assert!(!readme_builds.is_empty(), "the README shows how to build");
    assert!(
        readme.contains("target/release/tokengate"),
        "the README names target/release/tokengate"
    );
    for command in readme_builds.iter().chain(&builds) {
        let release = command.contains("--release") || command.starts_with("cargo install");
        assert!(
            release,
            "`{command}`: not the release profile (cargo install is release by default)"
        );
        for flag in [
            "--features",
            "--all-features",
            "--no-default-features",
            "--profile",
            "--target ",
            "--config",
        ] {
            assert!(
                !command.contains(flag),
                "`{command}`: {flag} makes another binary than the other builds"
            );
        }
    }
    for stage in &stages {
        for (instruction, args) in &stage.instructions {
            if instruction == "ENV" || instruction == "ARG" {
                for var in [
                    "RUSTFLAGS",
                    "CARGO_PROFILE",
                    "CARGO_BUILD",
                    "CARGO_ENCODED_RUSTFLAGS",
                ] {
                    assert!(
                        !args.contains(var),
                        "Dockerfile: {instruction} {args} changes how cargo builds"
                    );
                }
            }
        }
    }
    assert!(
        !repo_path(".cargo/config.toml").exists() && !repo_path(".cargo/config").exists(),
        "a .cargo/config would apply to both builds; check this test still says the truth"
    );

    // The builder's Rust is at least the crate's rust-version when pinned.
    let manifest: toml_like::Manifest = toml_like::read(&read("Cargo.toml"));
    let rust_tag = builder
        .base
        .strip_prefix("rust:")
        .expect("builder FROM rust:…");
    let version = rust_tag.split('-').next().unwrap();
    let parts: Vec<u64> = version.split('.').map(|p| p.parse().unwrap()).collect();
    let needed: Vec<u64> = manifest
        .rust_version
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    if parts.len() >= 2 {
        assert!(
            parts >= needed,
            "Dockerfile: rust:{version} is older than rust-version {}",
            manifest.rust_version
        );
    }

    // The host's build output never enters the build context.
    let ignored = read(".dockerignore");
    assert!(
        ignored
            .lines()
            .any(|l| l.trim().trim_end_matches('/') == "target"),
        ".dockerignore must exclude target/"
    );

    // The image runs tokengate as its non-root user and listens where it says.
    image_user();
    assert_eq!(exec_form(runtime.one("ENTRYPOINT")), ["tokengate"]);
    let cmd = exec_form(runtime.one("CMD"));
    let exposed: u16 = runtime.one("EXPOSE").parse().unwrap();
    assert_eq!(
        listen_flag_port(&cmd),
        Some(exposed),
        "CMD --listen and EXPOSE"
    );
}

/// Just what these tests read from `Cargo.toml`, without a TOML parser.
mod toml_like {
    pub struct Manifest {
        pub version: String,
        pub rust_version: String,
    }

    pub fn read(text: &str) -> Manifest {
        let package = text
            .split("\n[")
            .find(|section| section.starts_with("[package]") || section.starts_with("package]"))
            .expect("Cargo.toml has [package]");
        let value = |key: &str| {
            package
                .lines()
                .find_map(|line| {
                    let (k, v) = line.split_once('=')?;
                    (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
                })
                .unwrap_or_else(|| panic!("Cargo.toml: no package.{key}"))
        };
        Manifest {
            version: value("version"),
            rust_version: value("rust-version"),
        }
    }
}

// ---- Kubernetes ---------------------------------------------------------------

/// The base rendered as kustomize does it: the resources, one ConfigMap per
/// `configMapGenerator` entry (named without the content hash that
/// kustomize appends to it and to every reference), and `images` applied to
/// every container.
fn render_kustomize(dir: &Path) -> Vec<Value> {
    let kustomization = &yaml_documents(&dir.join("kustomization.yaml"))[0];
    let known = [
        "apiVersion",
        "kind",
        "resources",
        "configMapGenerator",
        "images",
    ];
    for key in kustomization.as_mapping().unwrap().keys() {
        let key = key.as_str().unwrap();
        assert!(
            known.contains(&key),
            "kustomization.yaml: `{key}` is not rendered by this test; teach render_kustomize() about it"
        );
    }
    let mut docs: Vec<Value> = list(kustomization, "resources")
        .iter()
        .flat_map(|file| yaml_documents(&dir.join(file.as_str().unwrap())))
        .collect();
    for generator in list(kustomization, "configMapGenerator") {
        let mut data = serde_yaml::Mapping::new();
        for file in list(generator, "files") {
            let file = file.as_str().unwrap();
            let (key, path) = file
                .split_once('=')
                .unwrap_or((Path::new(file).file_name().unwrap().to_str().unwrap(), file));
            let content = std::fs::read_to_string(dir.join(path)).unwrap();
            data.insert(key.into(), content.into());
        }
        let mut map = serde_yaml::Mapping::new();
        map.insert("apiVersion".into(), "v1".into());
        map.insert("kind".into(), "ConfigMap".into());
        let mut metadata = serde_yaml::Mapping::new();
        metadata.insert("name".into(), at(generator, "name").clone());
        map.insert("metadata".into(), metadata.into());
        map.insert("data".into(), data.into());
        docs.push(map.into());
    }
    for image in list(kustomization, "images") {
        let name = text(image, "name");
        for doc in docs.iter_mut() {
            let Some(Value::Sequence(containers)) = doc
                .get_mut("spec")
                .and_then(|s| s.get_mut("template"))
                .and_then(|t| t.get_mut("spec"))
                .and_then(|s| s.get_mut("containers"))
            else {
                continue;
            };
            for container in containers {
                let current = text(container, "image").to_owned();
                let base = current.split(':').next().unwrap();
                if base != name {
                    continue;
                }
                let new_name = at(image, "newName").as_str().unwrap_or(base);
                let tag = at(image, "newTag")
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        current
                            .split_once(':')
                            .map_or("latest".into(), |(_, t)| t.into())
                    });
                container["image"] = format!("{new_name}:{tag}").into();
            }
        }
    }
    docs
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| text(d, "kind") == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in the base");
    found[0]
}

/// True when every `key: value` of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().expect("a selector");
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.get(k.as_str().unwrap()) == Some(v))
}

/// A CPU quantity in millicores (`500m`, `1`, `1.5`).
fn millicores(quantity: &Value) -> u64 {
    let text = match quantity {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => panic!("{other:?} is not a CPU quantity"),
    };
    match text.strip_suffix('m') {
        Some(milli) => milli.parse().unwrap(),
        None => (text.parse::<f64>().unwrap() * 1000.0) as u64,
    }
}

/// A memory quantity in bytes (`128Mi`, `1Gi`, `500M`).
fn bytes(quantity: &Value) -> u64 {
    let text = quantity.as_str().expect("a memory quantity string");
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("K", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(n) = text.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap() * factor;
        }
    }
    text.parse().unwrap()
}

/// A container's port number by name or number.
fn port_of(container: &Value, port: &Value) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(name) => number(named(container, "ports", name), "containerPort"),
        other => panic!("{other:?} is not a port"),
    }
}

#[test]
fn the_kubernetes_base_matches_its_config_the_image_and_the_drain() {
    let dir = repo_path("deploy/kubernetes");
    let docs = render_kustomize(&dir);
    let deployment = of_kind(&docs, "Deployment");
    let pod = at(deployment, "spec.template.spec");
    let pod_labels = at(deployment, "spec.template.metadata.labels");
    let container = named(pod, "containers", "tokengate");
    assert!(
        selects(at(deployment, "spec.selector.matchLabels"), pod_labels),
        "the Deployment selects its own pods"
    );

    // The config the pods read: the ConfigMap mounted at the --config folder.
    let args: Vec<String> = list(container, "args")
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let config_path = &args[args.iter().position(|a| a == "--config").expect("--config") + 1];
    let config_dir = Path::new(config_path).parent().unwrap();
    let mount = list(container, "volumeMounts")
        .iter()
        .find(|m| Path::new(text(m, "mountPath")) == config_dir)
        .unwrap_or_else(|| panic!("nothing is mounted at {}", config_dir.display()));
    let volume = named(pod, "volumes", text(mount, "name"));
    let configmap_name = text(volume, "configMap.name");
    let configmap = docs
        .iter()
        .find(|d| text(d, "kind") == "ConfigMap" && text(d, "metadata.name") == configmap_name)
        .unwrap_or_else(|| panic!("no ConfigMap {configmap_name}"));
    let file_name = Path::new(config_path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let (config, config_yaml) = validated_config(
        "deploy/kubernetes/tokengate.yaml",
        data(configmap, file_name),
        config_dir,
    );

    // The policy the config names is in the same ConfigMap, and it is the
    // repository's default policy.
    assert_eq!(config.policy_file.parent(), Some(config_dir));
    let policy_key = config.policy_file.file_name().unwrap().to_str().unwrap();
    let policy = data(configmap, policy_key);
    assert!(
        policy == read("config/policy.yaml"),
        "deploy/kubernetes/{policy_key} differs from config/policy.yaml: copy it (cp config/policy.yaml deploy/kubernetes/{policy_key})"
    );
    tokengate::policy::Policy::from_yaml(policy).expect("the policy loads");

    // Listening where the probes and the Service look.
    assert!(
        config.listen.ip().is_unspecified(),
        "listen must be 0.0.0.0:PORT (or [::]:PORT) to be reachable in a pod, not {}",
        config.listen
    );
    assert_eq!(
        listen_flag_port(&args),
        None,
        "the port is the config's: no --listen in args"
    );
    let http = port_of(container, &"http".into());
    assert_eq!(
        http,
        u64::from(config.listen.port()),
        "containerPort `http` is the config's listen port"
    );
    for (probe, path) in [
        ("livenessProbe", "/_tokengate/health"),
        ("readinessProbe", "/_tokengate/ready"),
    ] {
        let probe_value = at(container, probe);
        assert_eq!(text(probe_value, "httpGet.path"), path, "{probe}");
        assert_eq!(
            port_of(container, at(probe_value, "httpGet.port")),
            http,
            "{probe} port"
        );
    }
    let service = of_kind(&docs, "Service");
    assert!(
        selects(at(service, "spec.selector"), pod_labels),
        "the Service selects the pods"
    );
    for port in list(service, "spec.ports") {
        assert_eq!(
            port_of(container, at(port, "targetPort")),
            http,
            "Service targetPort"
        );
    }

    // The image: the crate's version, run as the Dockerfile's user.
    let version = toml_like::read(&read("Cargo.toml")).version;
    assert_eq!(
        text(container, "image"),
        format!("tokengate:{version}"),
        "bump images[0].newTag in kustomization.yaml"
    );
    let (uid, gid) = image_user();
    assert_eq!(at(pod, "securityContext.runAsNonRoot"), &Value::Bool(true));
    assert_eq!(
        number(pod, "securityContext.runAsUser"),
        uid,
        "runAsUser is the image's USER"
    );
    assert_eq!(
        number(pod, "securityContext.runAsGroup"),
        gid,
        "runAsGroup is the image's group"
    );
    assert_eq!(
        number(pod, "securityContext.fsGroup"),
        gid,
        "fsGroup: secret files readable by the image's group"
    );
    let security = at(container, "securityContext");
    assert_eq!(at(security, "readOnlyRootFilesystem"), &Value::Bool(true));
    assert_eq!(
        at(security, "allowPrivilegeEscalation"),
        &Value::Bool(false)
    );
    assert!(list(security, "capabilities.drop").contains(&"ALL".into()));
    assert_eq!(at(pod, "automountServiceAccountToken"), &Value::Bool(false));

    // Secrets are files from a Secret volume, and the config reads them there.
    let secret_mounts: Vec<&str> = list(container, "volumeMounts")
        .iter()
        .filter(|m| at(named(pod, "volumes", text(m, "name")), "secret").is_mapping())
        .inspect(|m| assert_eq!(at(m, "readOnly"), &Value::Bool(true)))
        .map(|m| text(m, "mountPath"))
        .collect();
    assert!(!secret_mounts.is_empty(), "a Secret is mounted as files");
    if let Some(file) = at(&config_yaml, "store.redis.password_file").as_str() {
        assert!(
            secret_mounts.iter().any(|m| Path::new(file).starts_with(m)),
            "store.redis.password_file {file} is not in a mounted Secret {secret_mounts:?}"
        );
    }

    // The drain: Kubernetes runs preStop, then sends SIGTERM; the gateway
    // drains for shutdown.drain_delay_ms and exits within grace_period_ms.
    let pre_stop: Vec<&str> = list(container, "lifecycle.preStop.exec.command")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let pre_stop_ms = match pre_stop.as_slice() {
        ["sleep", seconds] => seconds.parse::<u64>().expect("sleep SECONDS") * 1000,
        other => panic!("preStop must be [\"sleep\", \"SECONDS\"], not {other:?}"),
    };
    let (drain_ms, grace_ms) = (drain_delay_ms(&config_yaml), grace_period_ms(&config_yaml));
    assert!(
        pre_stop_ms >= drain_ms,
        "preStop sleeps {pre_stop_ms} ms, less than shutdown.drain_delay_ms {drain_ms}"
    );
    let termination_ms = number(pod, "terminationGracePeriodSeconds") * 1000;
    assert!(
        termination_ms >= pre_stop_ms + grace_ms,
        "terminationGracePeriodSeconds ({termination_ms} ms) must cover preStop ({pre_stop_ms} ms) + shutdown.grace_period_ms ({grace_ms} ms)"
    );

    // Resources: what the autoscaler measures against, and memory bounded.
    let resources = at(container, "resources");
    assert!(
        millicores(at(resources, "requests.cpu")) > 0,
        "requests.cpu: the HPA's 100 %"
    );
    let (requested, limit) = (
        bytes(at(resources, "requests.memory")),
        bytes(at(resources, "limits.memory")),
    );
    assert!(
        requested <= limit,
        "memory request {requested} > limit {limit}"
    );
    assert!(
        !at(&config_yaml, "workers").is_null(),
        "set `workers` in the pod's config: without a CPU limit the default counts the node's CPUs"
    );

    // Autoscaler, disruption budget and rollout agree.
    let hpa = of_kind(&docs, "HorizontalPodAutoscaler");
    assert_eq!(text(hpa, "spec.scaleTargetRef.kind"), "Deployment");
    assert_eq!(
        text(hpa, "spec.scaleTargetRef.name"),
        text(deployment, "metadata.name")
    );
    let min = number(hpa, "spec.minReplicas");
    assert!(
        min >= 2,
        "minReplicas {min}: one pod serves while another is drained"
    );
    assert!(number(hpa, "spec.maxReplicas") >= min);
    let cpu = list(hpa, "spec.metrics")
        .iter()
        .find(|m| text(m, "type") == "Resource" && text(m, "resource.name") == "cpu")
        .expect("the HPA scales on CPU");
    let utilization = number(cpu, "resource.target.averageUtilization");
    assert!((1..=100).contains(&utilization));
    assert!(
        at(deployment, "spec.replicas").is_null(),
        "the HPA owns the replica count: a Deployment `replicas` would reset it on every apply"
    );
    let pdb = of_kind(&docs, "PodDisruptionBudget");
    assert!(
        selects(at(pdb, "spec.selector.matchLabels"), pod_labels),
        "the PDB selects the pods"
    );
    let allowed = match (
        at(pdb, "spec.maxUnavailable").as_u64(),
        at(pdb, "spec.minAvailable").as_u64(),
    ) {
        (Some(max), None) => max,
        (None, Some(min_available)) => min.saturating_sub(min_available),
        other => {
            panic!("the PDB needs one of maxUnavailable, minAvailable (as numbers): {other:?}")
        }
    };
    assert!(
        allowed >= 1,
        "at minReplicas the PDB must allow a disruption, or node drains block"
    );
    assert_eq!(
        at(deployment, "spec.strategy.rollingUpdate.maxUnavailable").as_u64(),
        Some(0),
        "a rollout never takes capacity away"
    );

    cross_check_with_kubectl(&dir, &docs);
}

/// When `kubectl` is installed, its rendering has the same objects, the
/// same image and the same ConfigMap data as [`render_kustomize`]'s.
fn cross_check_with_kubectl(dir: &Path, docs: &[Value]) {
    let Ok(output) = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
    else {
        eprintln!("kubectl is not installed: the base was rendered by this test alone");
        return;
    };
    assert!(
        output.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(rendered.path(), &output.stdout).unwrap();
    let theirs = yaml_documents(rendered.path());
    let names = |docs: &[Value], hashed: bool| {
        let mut names: Vec<String> = docs
            .iter()
            .map(|d| {
                let name = text(d, "metadata.name");
                // kustomize appends a content hash to generated ConfigMaps.
                let name = match text(d, "kind") {
                    "ConfigMap" if hashed => name.rsplit_once('-').map_or(name, |(base, _)| base),
                    _ => name,
                };
                format!("{}/{name}", text(d, "kind"))
            })
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&theirs, true), names(docs, false));
    let image = |docs: &[Value]| {
        text(
            named(
                at(of_kind(docs, "Deployment"), "spec.template.spec"),
                "containers",
                "tokengate",
            ),
            "image",
        )
        .to_owned()
    };
    assert_eq!(image(&theirs), image(docs));
    assert_eq!(
        at(of_kind(&theirs, "ConfigMap"), "data"),
        at(of_kind(docs, "ConfigMap"), "data")
    );
}

// ---- docker compose -----------------------------------------------------------

/// A `SOURCE:TARGET[:ro]` bind mount of a compose service, `SOURCE`
/// resolved against the compose file's folder; `None` for a named volume.
fn bind_mount(spec: &str, compose_dir: &Path) -> Option<(PathBuf, String)> {
    let mut parts = spec.split(':');
    let (source, target) = (parts.next()?, parts.next()?);
    (source.starts_with('.') || source.starts_with('/'))
        .then(|| (compose_dir.join(source), target.to_owned()))
}

#[test]
fn the_compose_file_mounts_files_that_exist_and_its_config_names_its_services() {
    let path = repo_path("deploy/docker-compose.yml");
    let compose_dir = path.parent().unwrap();
    let compose = &yaml_documents(&path)[0];
    let services = at(compose, "services");
    for name in ["tokengate", "redis", "upstream"] {
        assert!(services.get(name).is_some(), "compose service `{name}`");
    }
    let stages = dockerfile();

    // Every file a service mounts, builds from or reads as a secret exists.
    for (name, service) in services.as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        for volume in list(service, "volumes") {
            if let Some((source, _)) = bind_mount(volume.as_str().unwrap(), compose_dir) {
                assert!(
                    source.exists(),
                    "{name}: mounts {} which does not exist",
                    source.display()
                );
            }
        }
        if let Some(build) = service.get("build") {
            let context = compose_dir.join(text(build, "context"));
            let dockerfile = context.join(at(build, "dockerfile").as_str().unwrap_or("Dockerfile"));
            assert!(dockerfile.exists(), "{name}: no {}", dockerfile.display());
            if let Some(target) = at(build, "target").as_str() {
                stage(&stages, target);
            }
        }
        for secret in list(service, "secrets") {
            let secret = secret.as_str().unwrap_or_else(|| text(secret, "source"));
            let file = compose_dir.join(text(compose, &format!("secrets.{secret}.file")));
            assert!(
                file.exists(),
                "{name}: secret {secret} is {} which does not exist",
                file.display()
            );
        }
    }

    // The gateway's config, as mounted, and what it says about the others.
    let tokengate = at(services, "tokengate");
    let mounts: Vec<(PathBuf, String)> = list(tokengate, "volumes")
        .iter()
        .filter_map(|v| bind_mount(v.as_str().unwrap(), compose_dir))
        .collect();
    let command: Vec<String> = list(tokengate, "command")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let config_target = &command[command
        .iter()
        .position(|c| c == "--config")
        .expect("--config")
        + 1];
    let (config_source, _) = mounts
        .iter()
        .find(|(_, target)| target == config_target)
        .unwrap_or_else(|| panic!("the config {config_target} is not mounted"));
    let config_dir = Path::new(config_target).parent().unwrap();
    let (config, config_yaml) = validated_config(
        "deploy/compose/tokengate.yaml",
        &std::fs::read_to_string(config_source).unwrap(),
        config_dir,
    );
    assert!(
        mounts
            .iter()
            .any(|(_, target)| Path::new(target) == config.policy_file),
        "the policy {} is not mounted",
        config.policy_file.display()
    );

    // Listening where compose publishes it; the image's user, read-only.
    assert!(
        config.listen.ip().is_unspecified(),
        "listen must be 0.0.0.0:PORT in a container"
    );
    assert_eq!(
        listen_flag_port(&command),
        None,
        "the port is the config's: no --listen"
    );
    let published: Vec<u16> = list(tokengate, "ports")
        .iter()
        .map(|p| {
            p.as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(
        published,
        [config.listen.port()],
        "the published container port is the config's"
    );
    let (uid, gid) = image_user();
    assert_eq!(
        text(tokengate, "user"),
        format!("{uid}:{gid}"),
        "the image's user"
    );
    assert_eq!(at(tokengate, "read_only"), &Value::Bool(true));

    // The config's upstream and store are the compose services.
    assert_eq!(config.upstream.authority.host(), "upstream");
    let upstream_stage = stage(&stages, text(at(services, "upstream"), "build.target"));
    let upstream_port = listen_flag_port(&exec_form(upstream_stage.one("ENTRYPOINT")));
    assert_eq!(
        config.upstream.authority.port_u16(),
        upstream_port,
        "upstream.url's port is the example upstream's"
    );
    let redis_url = text(&config_yaml, "store.redis.url");
    assert!(
        redis_url.starts_with("redis://redis:"),
        "store.redis.url names the redis service: {redis_url}"
    );
    if let Some(file) = at(&config_yaml, "store.redis.password_file").as_str() {
        let secret = file
            .strip_prefix("/run/secrets/")
            .expect("a compose secret file");
        assert!(
            list(tokengate, "secrets").contains(&secret.into())
                && list(at(services, "redis"), "secrets").contains(&secret.into()),
            "secret {secret} goes to both tokengate and redis"
        );
    }

    // `docker compose stop` waits for the drain.
    let stop = text(tokengate, "stop_grace_period");
    let stop_ms = stop
        .strip_suffix('s')
        .and_then(|s| s.parse::<u64>().ok())
        .expect("stop_grace_period: Ns")
        * 1000;
    assert!(
        stop_ms > grace_period_ms(&config_yaml),
        "stop_grace_period must exceed shutdown.grace_period_ms"
    );
}
