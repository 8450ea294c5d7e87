"""The Kubernetes manifests (deploy/kubernetes). No Kubernetes API server can
run here, so this checks what can be checked without one:

- every kustomization renders with `kubectl kustomize` and validates offline
  against the Kubernetes schemas with `kubernetes-validate --strict`
  (deploy/kubernetes/validate), and the validator does catch broken manifests;
- what a schema cannot say, on the renders: every Secret a workload uses is
  rendered or documented as one the user creates, ports, probes, Service and
  clients agree, invokers get longer than their drain, NetworkPolicies select
  the pods they are written for, variables are defined before they are used;
- the containers' commands as plain processes: each "pod" in a network
  namespace of its own (its own IP, the Service's name in its hosts file),
  the controller as the non-root user of its securityContext, with the
  Secrets' files made by deploy/kubernetes/make-secrets, probed as the kubelet
  probes them; a burst through the CLI over HTTPS; an invoker stopped with
  SIGTERM drains and leaves.

Tools: kubectl 1.21+ and kubernetes-validate (scripts/services installs the
latter), the volley binary (VOLLEY_BIN), root, iproute2, util-linux and
openssl for the processes. Missing ones skip with a notice; with CI=true they fail.
"""

import contextlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import _volley_binary

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
VALIDATE = K8S / "validate"
MAKE_SECRETS = K8S / "make-secrets"
# The renders `validate --out` writes: base/ and each overlay.
RENDERS = ["base", "overlays-small", "overlays-external-database"]
WORKLOAD_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job", "Pod"}
SKIPPED = 77


def _need(ok, why):
    """Skips (fails with CI=true) when something this test needs is missing."""
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


def _yaml():
    try:
        import yaml
    except ImportError:
        _need(False, "PyYAML is not installed (it comes with kubernetes-validate: scripts/services)")
    return yaml


def _validate(*args):
    proc = subprocess.run([str(VALIDATE), *map(str, args)], capture_output=True, text=True, timeout=600)
    if proc.returncode == SKIPPED:
        _need(False, proc.stderr.strip())
    return proc


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """Every render, validated (--strict): {name: [resource, ...]}."""
    out = tmp_path_factory.mktemp("renders")
    proc = _validate("--out", out)
    assert proc.returncode == 0, f"deploy/kubernetes/validate failed:\n{proc.stdout}{proc.stderr}"
    yaml = _yaml()
    return {p.stem: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in sorted(out.glob("*.yaml"))}


# --- reading renders ---------------------------------------------------------


def _one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _workloads(docs):
    """(resource, pod template) of every workload."""
    for d in docs:
        if d["kind"] == "Pod":
            yield d, d
        elif d["kind"] in WORKLOAD_KINDS:
            yield d, d["spec"]["template"]


def _containers(pod_spec):
    return pod_spec.get("initContainers", []) + pod_spec.get("containers", [])


def _container(workload, name):
    return next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def _env(container, name):
    return next((e for e in container.get("env", []) if e["name"] == name), None)


def _flag(args, flag):
    """The value of `--flag VALUE` or `--flag=VALUE` in a command line."""
    for i, a in enumerate(args):
        if a == flag:
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _port(port, container):
    """A probe's or Service's port (a number, or the name of one of the container's ports)."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"port {port!r} is not a port of container {container['name']}"
    return named[port]


def _matches(selector, labels):
    """Whether a label selector selects these labels."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        present, value = e["key"] in labels, labels.get(e["key"])
        op = e["operator"]
        if (op == "In" and value not in e["values"]) or (op == "NotIn" and value in e.get("values", [])):
            return False
        if (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def _pod_labels(docs):
    """{workload name: its pods' labels}."""
    return {w["metadata"]["name"]: t["metadata"].get("labels", {}) for w, t in _workloads(docs)}


def _quantity(q):
    """A Kubernetes quantity as a number (CPU in cores, memory in bytes)."""
    q = str(q)
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix in sorted(units, key=len, reverse=True):
        if q.endswith(suffix):
            return float(q[: -len(suffix)]) * units[suffix]
    return float(q)


def _volume_files(volume):
    """The files a Secret, ConfigMap or projected volume holds, if its items say (None if not)."""
    if not {"projected", "secret", "configMap"} & set(volume):
        return None
    sources = volume.get("projected", {}).get("sources", []) or [volume]
    files = set()
    for s in sources:
        source = s.get("secret") or s.get("configMap")
        if source is None:
            continue
        if not source.get("items"):
            return None
        files |= {i["path"] for i in source["items"]}
    return files


def _make_secrets(directory):
    proc = subprocess.run([str(MAKE_SECRETS), str(directory)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return directory


VAR = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _documented_secrets():
    """The table of README.md's "Secrets you create": {name: {keys}}."""
    text = (K8S / "README.md").read_text()
    assert "## Secrets you create" in text, "deploy/kubernetes/README.md has no 'Secrets you create' section"
    section = text.split("## Secrets you create", 1)[1].split("\n## ", 1)[0]
    documented = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"`[a-z0-9.-]+`", cells[0]):
            documented[cells[0].strip("`")] = set(re.findall(r"`([^`]+)`", cells[1]))
    return documented


def _references(docs):
    """Every (kind, name, key or None, where) a workload takes from a Secret or ConfigMap."""
    refs = []
    for w, template in _workloads(docs):
        spec, wname = template["spec"], f"{w['kind']} {w['metadata']['name']}"
        for c in _containers(spec):
            for e in c.get("env", []):
                source = e.get("valueFrom", {})
                for field, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                    if field in source:
                        r = source[field]
                        refs.append((kind, r["name"], r["key"], f"{wname} env {e['name']}"))
            for e in c.get("envFrom", []):
                for field, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                    if field in e:
                        refs.append((kind, e[field]["name"], None, f"{wname} envFrom"))
        for v in spec.get("volumes", []):
            sources = [v] + v.get("projected", {}).get("sources", [])
            for s in sources:
                for field, kind, name_field in (("secret", "Secret", "secretName"), ("configMap", "ConfigMap", "name")):
                    if field in s:
                        name = s[field].get(name_field) or s[field].get("name")
                        items = s[field].get("items") or [{"key": None}]
                        refs += [(kind, name, i["key"], f"{wname} volume {v['name']}") for i in items]
        for s in spec.get("imagePullSecrets", []):
            refs.append(("Secret", s["name"], None, f"{wname} imagePullSecrets"))
    return refs


# --- rendering and strict validation -----------------------------------------


def test_every_kustomization_renders_and_is_valid_for_kubernetes_strictly(renders):
    assert set(RENDERS) <= set(renders), f"renders: {sorted(renders)}"
    for name in RENDERS:
        kinds = {d["kind"] for d in renders[name]}
        assert {"Namespace", "Deployment", "DaemonSet", "Service", "NetworkPolicy"} <= kinds, (name, kinds)
    assert "StatefulSet" in {d["kind"] for d in renders["overlays-small"]}


def test_the_validator_catches_broken_manifests(tmp_path):
    """The check can fail: a field Kubernetes does not know, a value of the wrong
    type and a kind it has no schema for each make validate fail, naming it."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(K8S, copy)
    controller_patch = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: volley-controller\nspec:\n{}"
    )
    broken = {
        "unknown-field": (
            controller_patch.format(
                "  template:\n    spec:\n      containers:\n        - name: controller\n"
                "          imagePullPolice: Always\n"
            ),
            "'imagePullPolice' was unexpected",
        ),
        "wrong-type": (controller_patch.format("  replicas: one\n"), "'one' is not of type 'integer'"),
        "unknown-kind": (
            "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
            "Couldn't find schema for kind Widget",
        ),
    }
    dirs = []
    for name, (manifest, _) in broken.items():
        d = copy / "overlays" / f"broken-{name}"
        d.mkdir()
        (d / "extra.yaml").write_text(manifest)
        listed = "resources:\n  - ../../base\n  - extra.yaml\n"
        if name != "unknown-kind":
            listed = "resources:\n  - ../../base\npatches:\n  - path: extra.yaml\n"
        (d / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: volley\n" + listed
        )
        dirs.append(d)
    proc = _validate(*dirs)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 1, report
    for (name, (_, message)), d in zip(broken.items(), dirs):
        assert f"FAIL {d}" in report, f"broken-{name} was not caught:\n{report}"
        assert message in report, f"broken-{name}: expected {message!r} in:\n{report}"
    # The copy itself is valid: the failures are the breakages'.
    intact = _validate(copy / "overlays" / "small")
    assert intact.returncode == 0, intact.stdout + intact.stderr


# --- what the schemas cannot say ------------------------------------------------


@pytest.mark.parametrize("render", RENDERS)
def test_every_secret_a_workload_uses_is_rendered_or_documented(renders, render):
    docs = renders[render]
    documented = _documented_secrets()
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    problems = []
    for kind, name, key, where in _references(docs):
        if (kind, name) in rendered:
            data = {**rendered[(kind, name)].get("data", {}), **rendered[(kind, name)].get("stringData", {})}
            if key is not None and key not in data:
                problems.append(f"{where}: {kind} {name} has no key {key}")
        elif kind != "Secret" or name not in documented:
            problems.append(f"{where}: {kind} {name} is neither rendered nor in README's 'Secrets you create'")
        elif key is not None and key not in documented[name]:
            problems.append(f"{where}: README's 'Secrets you create' does not list key {key} of {name}")
    assert not problems, "\n".join(problems)


def test_every_documented_secret_is_used(renders):
    used = {name for docs in renders.values() for kind, name, _, _ in _references(docs) if kind == "Secret"}
    stale = set(_documented_secrets()) - used
    assert not stale, f"README documents Secrets nothing uses: {sorted(stale)}"


@pytest.mark.parametrize("render", RENDERS)
def test_the_controller_listens_where_probes_service_and_invokers_look(renders, render):
    docs = renders[render]
    deployment = _one(docs, "Deployment", "volley-controller")
    template = deployment["spec"]["template"]
    c = _container(deployment, "controller")
    port = int(_flag(c["args"], "--listen").rsplit(":", 1)[1])
    assert [p["containerPort"] for p in c["ports"]] == [port]
    tls = _env(c, "VOLLEY_TLS_CERT") is not None and _env(c, "VOLLEY_TLS_KEY") is not None
    assert tls, "the controller serves HTTPS across hosts: VOLLEY_TLS_CERT and VOLLEY_TLS_KEY"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert (get["path"], _port(get["port"], c), get["scheme"]) == ("/healthz", port, "HTTPS"), probe
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == (str(port), "/metrics")
    assert annotations["prometheus.io/scheme"] == "https"
    service = _one(docs, "Service", "volley-controller")
    assert _matches({"matchLabels": service["spec"]["selector"]}, template["metadata"]["labels"])
    assert [_port(p["targetPort"], c) for p in service["spec"]["ports"]] == [port]
    # Invokers reach it by the Service's name and port, over https.
    invoker = _container(_one(docs, "DaemonSet", "volley-invoker"), "invoker")
    url = urllib.parse.urlsplit(_env(invoker, "VOLLEY_CONTROLLER")["value"])
    namespace = service["metadata"]["namespace"]
    assert url.scheme == "https"
    assert url.hostname in {
        f"{service['metadata']['name']}{suffix}" for suffix in ("", f".{namespace}", f".{namespace}.svc",
                                                                  f".{namespace}.svc.cluster.local")
    }, url.hostname
    assert url.port == service["spec"]["ports"][0]["port"]
    # With a read-only root, what it writes must be volumes: its data directory and /tmp.
    if c["securityContext"].get("readOnlyRootFilesystem"):
        mounts = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
        assert {_flag(c["args"], "--data-dir"), "/tmp"} <= mounts
    pod = template["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0


@pytest.mark.parametrize("render", RENDERS)
def test_invokers_get_longer_than_their_drain_and_say_who_they_are(renders, render):
    daemonset = _one(renders[render], "DaemonSet", "volley-invoker")
    spec = daemonset["spec"]["template"]["spec"]
    c = _container(daemonset, "invoker")
    drain = float(_env(c, "VOLLEY_DRAIN_GRACE")["value"])
    # After the drain the invoker tells the controller it leaves (up to 3 s)
    # and stops its packs: 10 s more before the kubelet's SIGKILL.
    assert spec["terminationGracePeriodSeconds"] >= drain + 10, (spec["terminationGracePeriodSeconds"], drain)
    health = int(_env(c, "VOLLEY_HEALTH_LISTEN")["value"].rsplit(":", 1)[1])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert (get["path"], _port(get["port"], c), get.get("scheme", "HTTP")) == ("/healthz", health, "HTTP")
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
              for e in c["env"] if "fieldRef" in e.get("valueFrom", {})}
    assert fields == {"NODE_NAME": "spec.nodeName", "POD_NAME": "metadata.name",
                      "VOLLEY_ADVERTISE_HOST": "status.podIP"}
    assert _flag(c["args"], "--name") == "$(NODE_NAME)"
    # Packs are sandboxed: root and privileged, in the pod's own PID namespace.
    assert c["securityContext"]["privileged"] is True and spec.get("hostPID", False) is False
    assert _env(c, "VOLLEY_SANDBOX")["value"] == "on"
    # What it offers workers is what the pod requests; the limit leaves it room.
    resources = c["resources"]
    offered = {e["name"]: e["valueFrom"]["resourceFieldRef"]["resource"]
               for e in c["env"] if "resourceFieldRef" in e.get("valueFrom", {})}
    assert offered == {"VOLLEY_SLOTS": "requests.cpu", "VOLLEY_MEMORY_MB": "requests.memory"}
    assert (_flag(c["args"], "--slots"), _flag(c["args"], "--memory-mb")) == ("$(VOLLEY_SLOTS)", "$(VOLLEY_MEMORY_MB)")
    assert _quantity(resources["requests"]["memory"]) < _quantity(resources["limits"]["memory"])
    assert _quantity(resources["requests"]["cpu"]) >= 1


@pytest.mark.parametrize("render", RENDERS)
def test_network_policies_select_the_pods_they_are_written_for(renders, render):
    docs = renders[render]
    pods = _pod_labels(docs)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    selected = {}
    for p in policies:
        name = p["metadata"]["name"]
        targets = {w for w, labels in pods.items() if _matches(p["spec"]["podSelector"], labels)}
        assert targets, f"NetworkPolicy {name} selects no pod"
        selected[name] = targets
        for rule in p["spec"].get("ingress", []) + p["spec"].get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    assert any(_matches(peer["podSelector"], labels) for labels in pods.values()), (
                        f"NetworkPolicy {name}: peer {peer} selects no pod"
                    )
    unguarded = set(pods) - set().union(*selected.values())
    assert not unguarded, f"no NetworkPolicy selects {unguarded}"

    def peers(rule, direction):
        return {w for peer in rule.get(direction, []) if "podSelector" in peer
                for w, labels in pods.items() if _matches(peer["podSelector"], labels)}

    def ports(rule):
        return {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports", [])}

    controller = _container(_one(docs, "Deployment", "volley-controller"), "controller")
    api = int(_flag(controller["args"], "--listen").rsplit(":", 1)[1])
    invokers = _one(docs, "NetworkPolicy", "volley-invoker")["spec"]
    assert selected["volley-invoker"] == {"volley-invoker"}
    # Ingress to invokers: from invokers only, on any TCP port.
    for rule in invokers["ingress"]:
        assert rule.get("from") and peers(rule, "from") == {"volley-invoker"}, rule
    assert any(ports(r) == {("TCP", None)} for r in invokers["ingress"])
    # Egress: the controller's API, the other invokers, DNS.
    egress = invokers["egress"]
    assert any(peers(r, "to") == {"volley-controller"} and ports(r) == {("TCP", api)} for r in egress)
    assert any(peers(r, "to") == {"volley-invoker"} and ports(r) == {("TCP", None)} for r in egress)
    assert any({("UDP", 53), ("TCP", 53)} <= ports(r) for r in egress)
    # Anyone reaches the controller's API, and only that port.
    ctl = _one(docs, "NetworkPolicy", "volley-controller")["spec"]
    assert selected["volley-controller"] == {"volley-controller"}
    assert [ports(r) for r in ctl["ingress"]] == [{("TCP", api)}]
    if "volley-postgres" in pods:
        pg = _one(docs, "NetworkPolicy", "volley-postgres")["spec"]
        assert [peers(r, "from") for r in pg["ingress"]] == [{"volley-controller"}]


@pytest.mark.parametrize("render", RENDERS)
def test_variables_are_defined_before_they_are_used(renders, render):
    """Kubernetes expands $(NAME) only from variables defined earlier; an
    unknown one stays as it is written, silently."""
    problems = []
    for w, template in _workloads(renders[render]):
        for c in _containers(template["spec"]):
            defined = set()
            for e in c.get("env", []):
                for name in VAR.findall(e.get("value", "")):
                    if name not in defined:
                        where = f"{w['metadata']['name']}/{c['name']}"
                        problems.append(f"{where}: {e['name']} uses $({name}) before it is defined")
                defined.add(e["name"])
            for arg in c.get("command", []) + c.get("args", []):
                problems += [f"{w['metadata']['name']}/{c['name']}: argument {arg!r} uses undefined $({n})"
                             for n in VAR.findall(arg) if n not in defined]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("render", RENDERS)
def test_files_named_in_the_environment_are_in_mounted_volumes(renders, render):
    for w, template in _workloads(renders[render]):
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        # A StatefulSet's claims are volumes of its pods too.
        for claim in w["spec"].get("volumeClaimTemplates", []):
            volumes[claim["metadata"]["name"]] = {"name": claim["metadata"]["name"], "persistentVolumeClaim": {}}
        for c in _containers(spec):
            mounts = {m["mountPath"]: volumes[m["name"]] for m in c.get("volumeMounts", [])}
            for e in c.get("env", []):
                value = e.get("value", "")
                for mount, volume in mounts.items():
                    if not value.startswith(mount + "/"):
                        continue
                    files = _volume_files(volume)
                    if files is not None:
                        assert value[len(mount) + 1:] in files, (
                            f"{w['metadata']['name']}/{c['name']}: {e['name']}={value} "
                            f"is not in volume {volume['name']}"
                        )


@pytest.mark.parametrize("render", RENDERS)
def test_the_controller_store_is_what_the_overlay_says(renders, render):
    docs = renders[render]
    c = _container(_one(docs, "Deployment", "volley-controller"), "controller")
    store = _env(c, "VOLLEY_STORE")
    if render == "base":
        assert store is None, "the base keeps the embedded store (overlays choose)"
    elif render == "overlays-external-database":
        assert store["valueFrom"]["secretKeyRef"] == {"name": "volley-store", "key": "url"}
    else:
        url = urllib.parse.urlsplit(store["value"])
        postgres = _one(docs, "StatefulSet", "volley-postgres")
        pg = _container(postgres, "postgres")
        service = _one(docs, "Service", url.hostname)
        pod_labels = postgres["spec"]["template"]["metadata"]["labels"]
        assert _matches({"matchLabels": service["spec"]["selector"]}, pod_labels)
        assert url.scheme == "postgres" and url.port == service["spec"]["ports"][0]["port"]
        assert url.username == _env(pg, "POSTGRES_USER")["value"]
        assert url.path == "/" + _env(pg, "POSTGRES_DB")["value"]
        (password,) = VAR.findall(url.password)
        assert _env(c, password)["valueFrom"] == _env(pg, "POSTGRES_PASSWORD")["valueFrom"]


def test_make_secrets_names_the_controller_as_invokers_reach_it(renders, tmp_path):
    _need(shutil.which("openssl") is not None, "openssl is not installed")
    made = _make_secrets(tmp_path / "secrets")
    invoker = _container(_one(renders["overlays-small"], "DaemonSet", "volley-invoker"), "invoker")
    host = urllib.parse.urlsplit(_env(invoker, "VOLLEY_CONTROLLER")["value"]).hostname
    for name in (host, "127.0.0.1"):
        flag = "-checkip" if name[0].isdigit() else "-checkhost"
        out = subprocess.run(["openssl", "x509", "-in", made / "tls.crt", "-noout", flag, name],
                             capture_output=True, text=True, check=True).stdout
        assert "does match" in out, out
    subprocess.run(["openssl", "verify", "-CAfile", made / "ca.crt", made / "tls.crt"], check=True, capture_output=True)
    # Secret files are written without a trailing newline where they end up in the environment.
    for name in ("invoker-token", "postgres-password"):
        assert not (made / name).read_bytes().endswith(b"\n"), name
    assert len((made / "invoker-token").read_text()) >= 32
    assert all(len(line.split()) == 2 for line in (made / "api-keys").read_text().splitlines()
               if line and not line.startswith("#"))


# --- the containers' commands as plain processes ------------------------------


# The Secrets make-secrets' files become (the README's kubectl create commands).
SECRET_FILES = {
    ("volley-api-keys", "api-keys"): "api-keys",
    ("volley-invoker-token", "token"): "invoker-token",
    ("volley-tls", "tls.crt"): "tls.crt",
    ("volley-tls", "tls.key"): "tls.key",
    ("volley-tls", "ca.crt"): "ca.crt",
    ("volley-postgres", "password"): "postgres-password",
}


def _expand(value, env):
    """$(NAME) as Kubernetes expands it: from variables defined so far; $$ is a $."""
    out = VAR.sub(lambda m: env.get(m.group(1), m.group(0)), value)
    return out.replace("$$", "$")


class _Pod:
    """One container of a rendered workload, as the kubelet would start it,
    as a plain process: its Secrets' files from `secrets`, its emptyDirs as
    directories, its environment resolved (Secrets, the downward API, the
    resources), every path below a mount moved to where that mount is here."""

    def __init__(self, workload, container, *, root, secrets, fields, extra_env=None):
        template = workload["spec"]["template"]
        spec = template["spec"]
        self.container = next(c for c in spec["containers"] if c["name"] == container)
        security = {**spec.get("securityContext", {}), **self.container.get("securityContext", {})}
        self.uid = security.get("runAsUser", 0)
        self.gid = security.get("runAsGroup", 0)
        self.fs_group = spec.get("securityContext", {}).get("fsGroup")
        self.root = root
        root.mkdir(mode=0o711)
        self.mounts = self._volumes(spec, secrets)
        env = {}
        for e in self.container.get("env", []):
            source = e.get("valueFrom")
            if source is None:
                env[e["name"]] = _expand(e.get("value", ""), env)
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                path = SECRET_FILES.get((ref["name"], ref["key"]))
                if path is None:
                    assert ref.get("optional"), f"no file for the Secret {ref['name']} key {ref['key']}"
                    continue
                # The kubelet hands a Secret's bytes over as they are.
                env[e["name"]] = (secrets / path).read_text()
            elif "fieldRef" in source:
                env[e["name"]] = fields[source["fieldRef"]["fieldPath"]]
            elif "resourceFieldRef" in source:
                ref = source["resourceFieldRef"]
                kind, resource = ref["resource"].split(".")
                amount = _quantity(self.container["resources"][kind][resource]) / _quantity(ref.get("divisor", "1"))
                env[e["name"]] = str(math.ceil(amount))
            else:
                raise AssertionError(f"cannot resolve {e}")
        for e in self.container.get("envFrom", []):
            assert e.get("secretRef", e.get("configMapRef", {})).get("optional"), f"no source for {e}"
        env.update(extra_env or {})
        self.env = {k: self._relocate(v) for k, v in env.items()}
        argv = [_expand(a, self.env) for a in self.container.get("command", []) + self.container.get("args", [])]
        self.argv = [self._relocate(a) for a in argv]

    def _volumes(self, spec, secrets):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {}
        for m in self.container.get("volumeMounts", []):
            volume = volumes[m["name"]]
            here = self.root / m["name"]
            here.mkdir()
            group = self.fs_group if self.fs_group is not None else 0
            if "emptyDir" in volume:
                # The kubelet makes an emptyDir 0777 (with fsGroup: its group's, setgid).
                os.chown(here, 0, group)
                os.chmod(here, 0o2777 if self.fs_group is not None else 0o777)
            else:
                projected = volume.get("projected", {})
                mode = projected.get("defaultMode", volume.get("secret", {}).get("defaultMode", 0o644))
                sources = projected.get("sources", []) or [volume]
                for s in sources:
                    source = s["secret"]
                    name = source.get("name") or source.get("secretName")
                    for item in source["items"]:
                        target = here / item["path"]
                        shutil.copyfile(secrets / SECRET_FILES[(name, item["key"])], target)
                        # With fsGroup the kubelet gives read-only volumes' files to
                        # that group and adds group read.
                        os.chown(target, 0, group)
                        os.chmod(target, item.get("mode", mode) | (0o440 if self.fs_group is not None else 0))
                os.chown(here, 0, group)
                os.chmod(here, 0o2750 if self.fs_group is not None else 0o755)
            mounts[m["mountPath"]] = here
        return mounts

    def _relocate(self, value):
        for mount in sorted(self.mounts, key=len, reverse=True):
            if value == mount or value.startswith(mount + "/"):
                return str(self.mounts[mount]) + value[len(mount):]
        return value

    def start(self, binary, netns, hosts, log):
        """Starts the container's command in network namespace `netns`, with
        `hosts` as its /etc/hosts, as the user of its securityContext."""
        assert self.argv[0] == "volley", self.argv
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/",
            # What the kubelet adds to every container.
            "KUBERNETES_SERVICE_HOST": "10.96.0.1",
            "KUBERNETES_SERVICE_PORT": "443",
            **self.env,
        }
        if "/tmp" in self.mounts:
            env["TMPDIR"] = str(self.mounts["/tmp"])
        # nsenter joins the namespace's network only (`ip netns exec` would also
        # remount /sys, hiding the cgroups the sandbox needs); a mount namespace
        # of its own gives it its hosts file.
        prefix = ["nsenter", f"--net=/run/netns/{netns}", "unshare", "--mount", "--propagation", "slave",
                  "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts)]
        if self.uid != 0:
            groups = ",".join(str(g) for g in {self.gid, self.fs_group} if g is not None)
            prefix += ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", f"--groups={groups}",
                       "--no-new-privs", "--"]
        return subprocess.Popen(prefix + [str(binary)] + self.argv[1:], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def probe(self, ip, name):
        """The container's probe `name` as the kubelet runs it (HTTPS unverified): (status, body)."""
        get = self.container[name]["httpGet"]
        port = _port(get["port"], self.container)
        if get.get("scheme", "HTTP") == "HTTPS":
            conn = http.client.HTTPSConnection(ip, port, timeout=3, context=ssl._create_unverified_context())
        else:
            conn = http.client.HTTPConnection(ip, port, timeout=3)
        try:
            conn.request("GET", get["path"])
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        except (OSError, http.client.HTTPException):
            return None, ""
        finally:
            conn.close()


class _Network:
    """Pods' network: a bridge in the root namespace (10.78.N.1) and one
    network namespace per pod, each with its address (10.78.N.10 + i)."""

    def __init__(self):
        self.n = os.getpid() % 200 + 20
        self.bridge = f"vkbr{self.n}"
        self.namespaces = []
        _ip("link", "del", self.bridge, check=False)
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"10.78.{self.n}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def pod(self):
        """A new namespace: (its name, its address)."""
        i = len(self.namespaces)
        ns, outside, address = f"vk{self.n}p{i}", f"vk{self.n}v{i}", f"10.78.{self.n}.{10 + i}"
        _ip("netns", "del", ns, check=False)
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns, address

    def close(self):
        for ns in self.namespaces:
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", self.bridge, check=False)


def _ip(*args, check=True):
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def _eventually(seconds, what, check, log=None):
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = "" if log is None else "\n--- log ---\n" + Path(log).read_text(errors="replace")[-4000:]
            pytest.fail(f"{what} (waited {seconds} s){tail}")
        time.sleep(0.2)


class _Api:
    """The controller's HTTP API as a client outside its pod calls it: HTTPS
    checked against the CA, for the Service's name, at the pod's address."""

    def __init__(self, address, port, name, ca, key):
        self.address, self.port, self.name, self.key = address, port, name, key
        self.context = ssl.create_default_context(cafile=str(ca))

    def call(self, method, path, body=None, key=True, timeout=40):
        conn = http.client.HTTPSConnection(self.name, self.port, timeout=timeout, context=self.context)
        conn.sock = self.context.wrap_socket(
            socket.create_connection((self.address, self.port), timeout=timeout), server_hostname=self.name)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {self.key}"
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
            return response.status, (json.loads(text) if text.startswith(("{", "[")) else text)
        finally:
            conn.close()

    def burst(self, burst_id):
        status, burst = self.call("GET", f"/v1/bursts/{burst_id}")
        assert status == 200, burst
        return burst

    def invokers_named(self, name):
        status, invokers = self.call("GET", "/v1/invokers")
        assert status == 200, invokers
        return [i for i in invokers if i["registration"]["name"] == name]


def _wait_for_probes(pod, address, proc, log, expect):
    """Waits until each of the container's probes answers `expect(status, body)`
    as the kubelet would ask it; fails at once if the process exits."""
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        def passed():
            if proc.poll() is not None:
                pytest.fail(f"{pod.container['name']} exited ({proc.returncode}):\n{Path(log).read_text()[-4000:]}")
            return expect(*pod.probe(address, probe))
        _eventually(90, f"{pod.container['name']}: its {probe} never passed", passed, log)


def _stop(proc, seconds=15):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_the_containers_commands_run_as_plain_processes(renders):
    """overlays/small's controller and invoker containers, started with their
    rendered command, arguments and environment, each in a network namespace of
    its own; the controller as the securityContext's user. Differences from a
    pod, on purpose: the controller's store is the embedded file (no
    PostgreSQL runs in these namespaces; the URL is checked by
    test_the_controller_store_is_what_the_overlay_says) and no image: the
    binary is VOLLEY_BIN."""
    binary = _volley_binary()
    _need(binary is not None, "the volley binary is not built (cargo build -p volley)")
    _need(os.geteuid() == 0, "pods as network namespaces, and sandboxed packs, need root")
    for tool in ("ip", "nsenter", "unshare", "setpriv", "openssl"):
        _need(shutil.which(tool) is not None, f"{tool} is not installed")
    docs = renders["overlays-small"]
    controller_workload = _one(docs, "Deployment", "volley-controller")
    invoker_workload = _one(docs, "DaemonSet", "volley-invoker")
    service = _one(docs, "Service", "volley-controller")
    namespace = service["metadata"]["namespace"]
    service_name = f"{service['metadata']['name']}.{namespace}.svc"

    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="volley-k8s-", dir="/tmp"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        os.chmod(work, 0o711)
        secrets = _make_secrets(work / "secrets")
        key = (secrets / "api-key").read_text().strip()
        net = _Network()
        stack.callback(net.close)
        controller_ns, controller_ip = net.pod()
        invoker_ns, invoker_ip = net.pod()
        controller_pod, invoker_pod, node = "volley-controller-7d9f8-x2k4q", "volley-invoker-5kq2t", "node-1"
        hosts = work / "hosts"
        names = " ".join(f"{service['metadata']['name']}{s}" for s in
                         ("", f".{namespace}", f".{namespace}.svc", f".{namespace}.svc.cluster.local"))
        hosts.write_text(f"127.0.0.1 localhost\n::1 localhost\n{controller_ip} {names}\n"
                         f"{controller_ip} {controller_pod}\n{invoker_ip} {invoker_pod}\n")
        os.chmod(hosts, 0o644)
        # The binary where the controller's user can run it (the build directory may be closed to it).
        runnable = work / "bin"
        runnable.mkdir(mode=0o755)
        try:
            os.link(binary, runnable / "volley")
        except OSError:
            shutil.copy2(binary, runnable / "volley")

        # The controller.
        controller = _Pod(
            controller_workload, "controller", root=work / "controller", secrets=secrets,
            fields={"metadata.name": controller_pod, "metadata.namespace": namespace, "status.podIP": controller_ip,
                    "spec.nodeName": node},
            extra_env={"VOLLEY_STORE": "embedded", "HOSTNAME": controller_pod},
        )
        assert controller.uid != 0, "the controller runs as a non-root user"
        controller_log = work / "controller.log"
        ctl = controller.start(runnable / "volley", controller_ns, hosts, controller_log.open("wb"))
        stack.callback(_stop, ctl)
        port = int(_flag(controller.argv, "--listen").rsplit(":", 1)[1])
        _wait_for_probes(controller, controller_ip, ctl, controller_log, lambda status, _: status == 200)
        api = _Api(controller_ip, port, service_name, secrets / "ca.crt", key)
        status, body = api.call("GET", "/healthz", key=False)
        assert status == 200, body
        # Keys are required, and a client that does not trust the CA refuses the certificate.
        status, body = api.call("GET", "/v1/bursts", key=False)
        assert status == 401, body
        with pytest.raises(ssl.SSLCertVerificationError):
            with socket.create_connection((controller_ip, port), timeout=10) as raw:
                ssl.create_default_context().wrap_socket(raw, server_hostname=service_name)

        # An invoker, as the DaemonSet starts it on node-1.
        def start_invoker(log, **override):
            pod = _Pod(
                invoker_workload, "invoker", root=work / f"invoker-{log.stem}", secrets=secrets,
                fields={"metadata.name": invoker_pod, "metadata.namespace": namespace, "status.podIP": invoker_ip,
                        "spec.nodeName": node},
                extra_env={"HOSTNAME": invoker_pod, **override},
            )
            proc = pod.start(binary, invoker_ns, hosts, log.open("wb"))
            stack.callback(_stop, proc)
            # 200 `ok` once registered with the controller.
            _wait_for_probes(pod, invoker_ip, proc, log, lambda status, body: (status, body.strip()) == (200, "ok"))
            return pod, proc

        invoker_log = work / "invoker.log"
        invoker, inv = start_invoker(invoker_log)
        assert invoker.argv[invoker.argv.index("--name") + 1] == node
        (registered,) = [i for i in api.invokers_named(node) if i["status"] == "ready"]
        assert registered["registration"]["host"] == invoker_ip
        assert registered["registration"]["slots"] == int(invoker.env["VOLLEY_SLOTS"])

        def cli(*args, timeout=120):
            # A client through `kubectl port-forward`: the controller at 127.0.0.1.
            proc = subprocess.run(
                ["nsenter", f"--net=/run/netns/{controller_ns}", binary, "--controller", f"https://127.0.0.1:{port}",
                 "--ca-file", secrets / "ca.crt", "--api-key", key, *args],
                capture_output=True, text=True, timeout=timeout,
                env={k: v for k, v in os.environ.items() if not k.startswith("VOLLEY_")})
            command = " ".join(map(str, args))
            assert proc.returncode == 0, f"volley {command}: {proc.stderr}\n{invoker_log.read_text()[-4000:]}"
            return proc.stdout

        # One burst of 4 workers through the CLI, over HTTPS.
        burst = json.loads(cli("--output", "json", "run", "hello", "--workers", "4"))
        assert burst["state"] == "succeeded", burst
        results = sorted((w["result"] for w in burst["workers"]), key=lambda r: r["rank"])
        assert [(r["rank"], r["size"]) for r in results] == [(rank, 4) for rank in range(4)], results

        # SIGTERM (the pod deleted) while a burst runs: the invoker drains, the
        # burst finishes, then the invoker leaves, well within the grace period.
        grace = invoker_workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        running = cli("run", "sleep", "--workers", "2", "--params", '{"seconds": 3}', "--detach").strip()
        _eventually(60, "the sleep burst never ran", lambda: api.burst(running)["state"] == "running", invoker_log)
        inv.send_signal(signal.SIGTERM)
        status, ended = api.call("GET", f"/v1/bursts/{running}/wait?timeout_ms=30000")
        assert ended["state"] == "succeeded", f"{ended}\n{invoker_log.read_text()[-4000:]}"
        assert inv.wait(grace) == 0, invoker_log.read_text()
        assert [i["status"] for i in api.invokers_named(node)][-1:] == ["left"], api.invokers_named(node)

        # A burst that outlasts the drain ends with the reason the pod's stop gives.
        short_log = work / "invoker-short.log"
        _, inv = start_invoker(short_log, VOLLEY_DRAIN_GRACE="1")
        long = cli("run", "sleep", "--workers", "2", "--params", '{"seconds": 120}', "--detach").strip()
        _eventually(60, "the long burst never ran", lambda: api.burst(long)["state"] == "running", short_log)
        inv.send_signal(signal.SIGTERM)
        status, ended = api.call("GET", f"/v1/bursts/{long}/wait?timeout_ms=30000")
        assert ended["state"] == "failed", ended
        assert f"invoker {node} left: pod {invoker_pod} was stopped (SIGTERM)" in ended["error"], ended["error"]
        assert inv.wait(grace) == 0, short_log.read_text()

        # The controller stops cleanly on SIGTERM too.
        ctl.send_signal(signal.SIGTERM)
        assert ctl.wait(30) == 0, controller_log.read_text()
