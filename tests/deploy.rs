//! The Dockerfile and deploy/ manifests agree with each other and with the
//! binary: ports, user, probes, the restricted Pod Security profile. (They
//! are applied to a real API server in tests/kube.rs.)

use std::path::Path;

use serde_json::Value;

fn repo(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(&repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, key| match key.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[key],
    })
}

fn container(deployment: &Value) -> &Value {
    let containers = at(deployment, "spec.template.spec.containers").as_array().unwrap();
    containers
        .iter()
        .find(|c| c["name"] == "meshdns")
        .expect("a meshdns container")
}

/// The restricted Pod Security Standard, for one container.
fn assert_restricted(c: &Value, pod: &Value) {
    let sc = &c["securityContext"];
    let either = |key: &str| {
        if sc[key].is_null() {
            pod[key].clone()
        } else {
            sc[key].clone()
        }
    };
    assert_eq!(either("runAsNonRoot"), Value::Bool(true));
    assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(at(sc, "capabilities.drop"), &serde_json::json!(["ALL"]));
    assert_eq!(at(&either("seccompProfile"), "type"), "RuntimeDefault");
    assert_eq!(either("runAsUser").as_u64(), Some(65532), "the image's USER");
}

fn probes(c: &Value) {
    assert_eq!(at(c, "livenessProbe.httpGet.path"), "/healthz");
    assert_eq!(at(c, "readinessProbe.httpGet.path"), "/readyz");
    resources(c);
}

fn resources(c: &Value) {
    assert!(!at(c, "resources.requests.cpu").is_null() && !at(c, "resources.limits.memory").is_null());
}

#[test]
fn deployment_is_ha_and_restricted() {
    let d = &yaml("deploy/deployment.yaml")[0];
    assert_eq!(at(d, "spec.replicas").as_u64(), Some(2));
    let pod = at(d, "spec.template.spec");
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert!(!at(pod, "affinity.podAntiAffinity").is_null());
    assert_eq!(pod["serviceAccountName"], "meshdns");
    let c = container(d);
    assert_restricted(c, &pod["securityContext"]);
    probes(c);
    // The drain (--shutdown-grace) must finish before Kubernetes kills the pod.
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "serve");
    let grace: u64 = args
        .iter()
        .find_map(|a| a.strip_prefix("--shutdown-grace="))
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > grace);
}

#[test]
fn service_maps_53_to_the_container_ports() {
    let d = &yaml("deploy/deployment.yaml")[0];
    let ports: Vec<(String, u64, String)> = container(d)["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["containerPort"].as_u64().unwrap(),
                p["protocol"].as_str().unwrap().into(),
            )
        })
        .collect();
    let s = &yaml("deploy/service.yaml")[0];
    let mut dns = Vec::new();
    for p in s["spec"]["ports"].as_array().unwrap() {
        let target = p["targetPort"].as_str().unwrap();
        let (_, number, protocol) = ports
            .iter()
            .find(|(n, ..)| n == target)
            .unwrap_or_else(|| panic!("no container port {target}"));
        assert_eq!(p["protocol"].as_str().unwrap(), protocol);
        if p["port"].as_u64() == Some(53) {
            dns.push((protocol.clone(), *number));
        }
    }
    dns.sort();
    assert_eq!(dns, [("TCP".to_string(), 1053), ("UDP".to_string(), 1053)]);
}

#[test]
fn rbac_grants_only_list_and_watch_on_serviceentries() {
    for file in [
        "deploy/rbac.yaml",
        "deploy/sidecar/rbac.yaml",
        "deploy/sidecar/istiocoredns-rbac.yaml",
    ] {
        let role = yaml(file).into_iter().find(|d| d["kind"] == "ClusterRole").unwrap();
        let expected = serde_json::json!(
            [{"apiGroups": ["networking.istio.io"], "resources": ["serviceentries"], "verbs": ["list", "watch"]}]
        );
        assert_eq!(role["rules"], expected, "{file}");
    }
}

#[test]
fn kustomization_lists_every_manifest() {
    let k = &yaml("deploy/kustomization.yaml")[0];
    let mut listed: Vec<&str> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    listed.sort();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut present: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    present.sort();
    assert_eq!(listed, present);
}

#[test]
fn dockerfile_matches_the_manifests() {
    let dockerfile = repo("Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let final_stage = &lines[last_from..];
    assert!(
        final_stage[0].contains("/distroless/static-") && final_stage[0].ends_with(":nonroot"),
        "final image: {}",
        final_stage[0]
    );
    // The build stage: cross-compiles on the builder's platform for each
    // target with the script tests/image.rs runs, which builds --locked.
    let build_from = lines.iter().find(|l| l.starts_with("FROM ")).unwrap();
    assert!(
        build_from.starts_with("FROM --platform=$BUILDPLATFORM "),
        "{build_from}"
    );
    let rust_image = build_from.split_whitespace().nth(2).unwrap();
    let rust_tag = rust_image.split(':').nth(1).expect("a tagged Rust image");
    let rust_version = rust_tag.split('-').next().unwrap();
    assert_eq!(
        rust_version.split('.').count(),
        3,
        "the Rust image by its full version: {rust_image}"
    );
    let msrv = repo("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let version = |v: &str| v.split('.').map(|n| n.parse::<u32>().unwrap()).collect::<Vec<_>>();
    assert!(
        version(rust_version) >= version(&msrv),
        "{rust_image} is older than rust-version {msrv}"
    );
    assert!(lines.contains(&"ARG TARGETARCH"), "multi-arch build stage");
    let built = lines
        .iter()
        .find_map(|l| l.strip_prefix("scripts/build-static.sh \"$TARGETARCH\" "))
        .expect("the build stage runs scripts/build-static.sh \"$TARGETARCH\" OUT");
    assert!(
        repo("scripts/build-static.sh").contains("--locked --release"),
        "reproducible build"
    );
    let user = final_stage.iter().find_map(|l| l.strip_prefix("USER ")).expect("USER");
    assert_eq!(user.split(':').next(), Some("65532"));
    let entrypoint = final_stage
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    let binary: Vec<String> = serde_json::from_str(entrypoint).unwrap();
    let copied = final_stage
        .iter()
        .find(|l| l.starts_with("COPY --from="))
        .expect("COPY of the binary");
    assert_eq!(
        copied.split_whitespace().collect::<Vec<_>>(),
        ["COPY", "--from=build", built, &binary[0]],
        "COPY installs what the build stage built at the ENTRYPOINT"
    );
    assert!(
        !final_stage.iter().any(|l| l.starts_with("RUN ")),
        "no shell in the final image, so no RUN"
    );

    let exposed: Vec<&str> = final_stage
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace())
        .collect();
    let d = &yaml("deploy/deployment.yaml")[0];
    for p in container(d)["ports"].as_array().unwrap() {
        let want = format!(
            "{}/{}",
            p["containerPort"].as_u64().unwrap(),
            p["protocol"].as_str().unwrap().to_lowercase()
        );
        assert!(exposed.contains(&want.as_str()), "EXPOSE {want} (exposed: {exposed:?})");
    }
}

#[test]
fn sidecar_variant_forwards_to_loopback() {
    let patch = &yaml("deploy/sidecar/coredns-patch.yaml")[0];
    let c = container(patch);
    assert_restricted(c, &Value::Null);
    resources(c);
    assert_eq!(at(c, "livenessProbe.httpGet.path"), "/healthz");
    // meshdns not syncing must not make the CoreDNS pod unready.
    assert!(c["readinessProbe"].is_null());
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--dns-addr=127.0.0.1:1053")
    );
    assert!(repo("deploy/sidecar/global.server").contains("forward . 127.0.0.1:1053"));
}

#[test]
fn istiocoredns_variant_swaps_the_plugin_container() {
    let patch = &yaml("deploy/sidecar/istiocoredns-patch.yaml")[0];
    let containers = at(patch, "spec.template.spec.containers").as_array().unwrap();
    let plugin = containers
        .iter()
        .find(|c| c["name"] == "istio-coredns-plugin")
        .expect("the plugin container is named");
    assert_eq!(plugin["$patch"], "delete");
    let c = container(patch);
    assert_restricted(c, &Value::Null);
    resources(c);
    assert_eq!(at(c, "livenessProbe.httpGet.path"), "/healthz");
    assert!(c["readinessProbe"].is_null());
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "serve");
    let flag = |name: &str| args.iter().find_map(|a| a.strip_prefix(name)).unwrap();
    let grpc: std::net::SocketAddr = flag("--grpc-addr=").parse().unwrap();
    let dns: std::net::SocketAddr = flag("--dns-addr=").parse().unwrap();
    assert!(grpc.ip().is_loopback() && dns.ip().is_loopback(), "loopback only");

    // The Corefile's grpc plugin sends `global` to that address, and only
    // `global`: everything else goes on as before.
    let corefile = repo("deploy/sidecar/istiocoredns.Corefile");
    let lines: Vec<&str> = corefile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(lines.iter().filter(|l| l.starts_with("grpc ")).count(), 1);
    assert!(lines.contains(&format!("grpc global {grpc}").as_str()), "{corefile}");
    assert!(lines.contains(&"except global"), "forward must not take global");

    let binding = yaml("deploy/sidecar/istiocoredns-rbac.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .unwrap();
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "istiocoredns-service-account", "namespace": "istio-system"}])
    );
}

#[test]
fn cluster_dns_snippets() {
    let corefile = repo("deploy/coredns/global.server");
    for line in ["global:53 {", "errors", "cache 30", "forward . MESHDNS_CLUSTER_IP"] {
        assert!(corefile.contains(line), "{line}");
    }
    let cm = &yaml("deploy/coredns/kube-dns-stubdomains.yaml")[0];
    let stub: serde_json::Value = serde_json::from_str(at(cm, "data.stubDomains").as_str().unwrap()).unwrap();
    assert_eq!(stub, serde_json::json!({"global": ["MESHDNS_CLUSTER_IP"]}));
    // The reverse zone's stanza, and its kube-dns form in a comment.
    let reverse = repo("deploy/coredns/reverse.server");
    for line in [
        "240.in-addr.arpa:53 {",
        "forward . MESHDNS_CLUSTER_IP",
        r#"{"global": ["MESHDNS_CLUSTER_IP"], "240.in-addr.arpa": ["MESHDNS_CLUSTER_IP"]}"#,
    ] {
        assert!(reverse.contains(line), "{line}");
    }
}

/// deploy/stub-domain/: the Job runs `stub-domain` as its own
/// ServiceAccount, restricted like the Deployment, and its Roles grant
/// exactly what its arguments name: get on the Service, get and update on
/// the two ConfigMaps, by name. deploy/ does not apply it.
#[test]
fn stub_domain_job_and_rbac_agree() {
    let k = &yaml("deploy/stub-domain/kustomization.yaml")[0];
    let mut listed: Vec<&str> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    listed.sort();
    assert_eq!(listed, ["job.yaml", "rbac.yaml"]);
    let top = &yaml("deploy/kustomization.yaml")[0];
    assert!(
        !top["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("stub-domain")),
        "kubectl apply -k deploy/ must not edit cluster DNS"
    );

    let job = &yaml("deploy/stub-domain/job.yaml")[0];
    assert_eq!(
        (job["apiVersion"].as_str(), job["kind"].as_str()),
        (Some("batch/v1"), Some("Job"))
    );
    let namespace = at(job, "metadata.namespace").as_str().unwrap();
    let pod = at(job, "spec.template.spec");
    assert_eq!(pod["restartPolicy"], "Never");
    let account = pod["serviceAccountName"].as_str().unwrap();
    assert_ne!(account, "meshdns", "not the serving Deployment's ServiceAccount");
    let c = container(job);
    assert_restricted(c, &pod["securityContext"]);
    resources(c);
    assert_eq!(c["image"], container(&yaml("deploy/deployment.yaml")[0])["image"]);
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "stub-domain");
    let flag = |name: &str| -> (String, String) {
        let value = args
            .iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")))
            .unwrap_or_else(|| panic!("the Job names --{name}= explicitly"));
        let (ns, n) = value.split_once('/').unwrap();
        (ns.to_string(), n.to_string())
    };
    let service = flag("service");
    let coredns = flag("coredns-configmap");
    let kube_dns = flag("kube-dns-configmap");

    let rbac = yaml("deploy/stub-domain/rbac.yaml");
    let kinds: Vec<&str> = rbac.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert!(
        kinds
            .iter()
            .all(|k| ["ServiceAccount", "Role", "RoleBinding"].contains(k)),
        "{kinds:?}"
    );
    let sa = rbac.iter().find(|d| d["kind"] == "ServiceAccount").unwrap();
    assert_eq!(at(sa, "metadata.name"), account);
    assert_eq!(at(sa, "metadata.namespace"), namespace);

    // Every (namespace, resource, name, verb) the ServiceAccount is granted.
    let mut granted = Vec::new();
    for binding in rbac.iter().filter(|d| d["kind"] == "RoleBinding") {
        let ns = at(binding, "metadata.namespace").as_str().unwrap();
        assert_eq!(
            binding["subjects"],
            serde_json::json!([{"kind": "ServiceAccount", "name": account, "namespace": namespace}])
        );
        assert_eq!(at(binding, "roleRef.kind"), "Role");
        let role = rbac
            .iter()
            .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == binding["roleRef"]["name"])
            .expect("the bound Role is shipped");
        assert_eq!(
            at(role, "metadata.namespace"),
            ns,
            "a RoleBinding binds a Role of its namespace"
        );
        for rule in role["rules"].as_array().unwrap() {
            assert_eq!(rule["apiGroups"], serde_json::json!([""]));
            let names = rule["resourceNames"].as_array().expect("resourceNames on every rule");
            for resource in rule["resources"].as_array().unwrap() {
                for name in names {
                    for verb in rule["verbs"].as_array().unwrap() {
                        granted.push(format!(
                            "{ns} {} {} {}",
                            resource.as_str().unwrap(),
                            name.as_str().unwrap(),
                            verb.as_str().unwrap()
                        ));
                    }
                }
            }
        }
    }
    granted.sort();
    let mut wanted = vec![format!("{} services {} get", service.0, service.1)];
    for (ns, name) in [&coredns, &kube_dns] {
        for verb in ["get", "update"] {
            wanted.push(format!("{ns} configmaps {name} {verb}"));
        }
    }
    wanted.sort();
    assert_eq!(granted, wanted);
}

/// The ServiceMonitor Component scrapes the Service's `metrics` port, which
/// targets the container's admin port, and it is off by default, so that
/// `kubectl apply -k deploy/` needs no monitoring CRDs (tests/kube.rs applies
/// deploy/ to an API server that has none).
#[test]
fn servicemonitor_component_matches_the_service_and_is_off_by_default() {
    let k = &yaml("deploy/monitoring/servicemonitor/kustomization.yaml")[0];
    assert_eq!(k["apiVersion"], "kustomize.config.k8s.io/v1alpha1");
    assert_eq!(k["kind"], "Component");
    assert_eq!(k["resources"], serde_json::json!(["servicemonitor.yaml"]));

    let sm = &yaml("deploy/monitoring/servicemonitor/servicemonitor.yaml")[0];
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["kind"], "ServiceMonitor");
    let s = &yaml("deploy/service.yaml")[0];
    let selector = at(sm, "spec.selector.matchLabels").as_object().unwrap();
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(
            &at(s, "metadata.labels")[key],
            value,
            "the Service lacks label {key}={value}"
        );
    }
    let namespace = &yaml("deploy/kustomization.yaml")[0]["namespace"];
    assert_eq!(&s["metadata"]["namespace"], namespace);
    assert_eq!(&sm["metadata"]["namespace"], namespace);
    assert_eq!(
        at(sm, "spec.namespaceSelector.matchNames"),
        &serde_json::json!([namespace])
    );

    let endpoints = at(sm, "spec.endpoints").as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["path"], "/metrics");
    let port = endpoints[0]["port"].as_str().unwrap();
    let service_port = s["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port)
        .unwrap_or_else(|| panic!("the Service has no port named {port}"));
    assert_eq!(service_port["port"].as_u64(), Some(9253));
    assert_eq!(service_port["protocol"], "TCP");
    // …which is the container port the admin endpoint (--admin-addr's default) serves.
    let d = &yaml("deploy/deployment.yaml")[0];
    let target = service_port["targetPort"].as_str().unwrap();
    let container_port = container(d)["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == target)
        .unwrap_or_else(|| panic!("no container port {target}"));
    assert_eq!(container_port["containerPort"].as_u64(), Some(9253));
    assert_eq!(at(container(d), "readinessProbe.httpGet.port"), target);

    // Off by default: deploy/ does not reach into monitoring/.
    let top = &yaml("deploy/kustomization.yaml")[0];
    assert!(
        top["components"].is_null(),
        "deploy/kustomization.yaml lists components"
    );
    for key in ["resources", "components", "bases"] {
        let refs = top[key].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(
            refs.iter().all(|r| !r.as_str().unwrap().contains("monitoring")),
            "deploy/kustomization.yaml {key}: {refs:?}"
        );
    }
    assert!(!repo("deploy/kustomization.yaml").contains("monitoring"));
}
