"""What facelab deploys on a real cluster, checked without one: the KubeRay manifests against
KubeRay's own CRD schemas, the RayService's Serve config against serve/config.yaml, the launcher
config against Ray's schema, the container image against the lock, and `serve build`."""

from __future__ import annotations

import fnmatch
import importlib.resources
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[2]
KUBERAY = REPO / "kuberay"
MANIFESTS = sorted(KUBERAY.glob("*.yaml"))
VERBS = ("train", "tune", "submit")
CREDENTIAL_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.I)


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


manifests = _load_script("kuberay_manifests")


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _containers(manifest: dict) -> list[dict]:
    """Every container of every pod template in a RayCluster / RayJob / RayService manifest."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            found.extend(node.get("containers") or [])
            for key, value in node.items():
                if key != "containers":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(manifest.get("spec", {}))
    return found


# --- KubeRay CRDs ---------------------------------------------------------------------------------

def _kuberay_crds() -> Path:
    """../shared/kuberay/crds: beside the data root (facelab.config.data_root()'s parent), else beside the repo."""
    from facelab.config import data_root

    for shared in (data_root().parent, REPO.parent / "shared"):
        if (shared / "kuberay" / "crds").is_dir():
            return shared / "kuberay" / "crds"
    pytest.skip(f"KubeRay CRDs not found at {data_root().parent / 'kuberay' / 'crds'} "
                f"or {REPO.parent / 'shared' / 'kuberay' / 'crds'}")


def _strict(schema):
    """The CRD schema with unknown fields refused, as `kubectl apply` (strict field validation)
    refuses them; a plain openAPIV3Schema lets a misspelt field through, to be pruned silently."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@pytest.fixture(scope="module")
def crd_validators() -> dict[tuple[str, str], jsonschema.Validator]:
    """(kind, apiVersion) -> a validator of the CRD's spec.versions[].schema.openAPIV3Schema.
    CEL rules (x-kubernetes-validations) are the API server's own and are not checked here."""
    validators = {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 3 MB of YAML
    for path in sorted(_kuberay_crds().glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=loader)
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            schema = _strict(version["schema"]["openAPIV3Schema"])
            validators[(crd["spec"]["names"]["kind"], api_version)] = jsonschema.Draft7Validator(schema)
    return validators


def _crd_errors(validators, manifest: dict) -> list[str]:
    key = (manifest.get("kind"), manifest.get("apiVersion"))
    if key not in validators:
        return [f"no KubeRay CRD for kind {key[0]!r} apiVersion {key[1]!r}"]
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
              for e in validators[key].iter_errors(manifest)]
    if not manifest.get("metadata", {}).get("name"):
        errors.append("metadata.name: missing")
    return errors


def test_the_manifests_are_there():
    assert {p.name for p in MANIFESTS} >= {"raycluster.yaml", "rayservice.yaml", *(f"rayjob-{v}.yaml" for v in VERBS)}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_against_kuberay_crd(crd_validators, path):
    assert _crd_errors(crd_validators, _yaml(path)) == []


def test_crd_validation_catches_mistakes(crd_validators):
    """The check is live: a misspelt field, a number where KubeRay wants a string, a missing group name."""
    cluster = _yaml(KUBERAY / "raycluster.yaml")
    cluster["spec"]["workerGroupSpecs"][1]["minReplica"] = 0
    cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    del cluster["spec"]["workerGroupSpecs"][0]["groupName"]
    errors = "\n".join(_crd_errors(crd_validators, cluster))
    assert "'minReplica' was unexpected" in errors
    assert "spec.headGroupSpec.rayStartParams.num-cpus: 0 is not of type 'string'" in errors
    assert "'groupName' is a required property" in errors


def test_raycluster_cpu_head_and_gpu_workers_from_zero():
    spec = _yaml(KUBERAY / "raycluster.yaml")["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"].get("limits", {})
    gpu = [g for g in spec["workerGroupSpecs"]
           if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    assert len(gpu) == 1 and gpu[0]["minReplicas"] == 0 and gpu[0]["maxReplicas"] > 0
    assert gpu[0]["template"]["spec"]["containers"][0]["image"].endswith("-gpu")


def test_every_pod_gets_the_object_store_and_its_credentials_from_a_secret():
    for path in MANIFESTS:
        for container in _containers(_yaml(path)):
            env = {e["name"]: e for e in container.get("env", [])}
            where = f"{path.name} container {container['name']}"
            assert re.match(r"(s3|gs|abfss?)://", env["FACELAB_STORE"].get("value", "")), where
            credentials = [name for name in env if CREDENTIAL_NAME.search(name)]
            assert credentials, f"{where}: no store credentials"
            for name in credentials:
                assert "value" not in env[name], f"{where}: {name} is written inline"
                assert env[name]["valueFrom"]["secretKeyRef"]["name"], f"{where}: {name} not from a secret"


def test_no_credential_literal_in_any_manifest():
    literal = re.compile(r"AKIA[0-9A-Z]{16}|aws_secret_access_key\s*[=:]\s*\S|-----BEGIN [A-Z ]*PRIVATE KEY|"
                         r"(?i:password|secret|token)\s*:\s*[\"']?[A-Za-z0-9/+=]{16,}")
    for path in [*MANIFESTS, REPO / "cluster.yaml"]:
        assert not literal.search(path.read_text()), path.name


@pytest.mark.parametrize("verb", VERBS)
def test_rayjob_runs_the_verb_on_the_raycluster(verb):
    """One RayJob per verb, on the RayCluster; its entrypoint parses with facelab's own CLI."""
    import typer

    from jobs.cli import app

    job = _yaml(KUBERAY / f"rayjob-{verb}.yaml")
    cluster = _yaml(KUBERAY / "raycluster.yaml")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    words = job["spec"]["entrypoint"].split()
    assert words[:3] == ["python", "-m", f"jobs.{verb}"]
    command = typer.main.get_command(app).commands[verb]
    params = command.make_context(verb, words[3:], resilient_parsing=False).params
    assert params["task"] and str(params["data"]).startswith("/data/")


# --- RayService: one source of truth ----------------------------------------------------------------

def test_rayservice_is_generated_from_serve_config_and_the_raycluster():
    """kuberay/rayservice.yaml is exactly what scripts/kuberay_manifests.py writes now: an edit of
    serve/config.yaml or raycluster.yaml without regenerating fails here."""
    assert (KUBERAY / "rayservice.yaml").read_text() == manifests.render(), \
        "kuberay/rayservice.yaml is out of date: run python scripts/kuberay_manifests.py"
    service = _yaml(KUBERAY / "rayservice.yaml")
    local = _yaml(REPO / "serve" / "config.yaml")  # in a pod the proxy listens on the pod's address
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == {**local, "http_options": {**local["http_options"], "host": "0.0.0.0"}}
    assert service["spec"]["rayClusterConfig"] == _yaml(KUBERAY / "raycluster.yaml")["spec"]


def test_generator_follows_serve_config(tmp_path):
    """A change in serve/config.yaml shows up in the generated serveConfigV2."""
    for rel in (manifests.SERVE_CONFIG, manifests.RAYCLUSTER):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    config = _yaml(tmp_path / manifests.SERVE_CONFIG)
    config["applications"][0]["deployments"][0]["num_replicas"] = 7
    (tmp_path / manifests.SERVE_CONFIG).write_text(yaml.safe_dump(config))
    generated = yaml.safe_load(manifests.render(tmp_path))
    in_pod = yaml.safe_load(generated["spec"]["serveConfigV2"])
    assert config["http_options"]["host"] == "127.0.0.1" and in_pod["http_options"]["host"] == "0.0.0.0"
    assert in_pod == {**config, "http_options": {**config["http_options"], "host": "0.0.0.0"}}
    assert manifests.render(tmp_path) != manifests.render()


def test_serve_config_v2_is_a_config_serve_deploy_accepts():
    from ray.serve.schema import ServeDeploySchema

    service = _yaml(KUBERAY / "rayservice.yaml")
    deploy = ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
    assert [app.import_path for app in deploy.applications] == ["serve.app:build_app"]


# --- the cluster launcher ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster() -> dict:
    return _yaml(REPO / "cluster.yaml")


def test_cluster_yaml_passes_rays_launcher_schema(cluster):
    """What `ray up` checks before it talks to the cloud: the config, filled out with the provider's
    defaults, against the JSON schema Ray ships (ray/autoscaler/ray-schema.json).

    Ray 2.60 has no public validator that stays offline: `ray up` validates through
    ray.autoscaler._private.util.validate_config (private), and the public
    ray.autoscaler.sdk.bootstrap_config validates and then calls the cloud provider. Ray keeps the
    launcher's internals out of its public API (ray-project/ray#8036: "not a public-facing API",
    use the CLI). So: the public sdk.fillout_defaults, then Ray's published schema file, read from
    the ray package's data with jsonschema, as validate_config itself does."""
    from ray.autoscaler.sdk import fillout_defaults

    schema = json.loads((importlib.resources.files("ray.autoscaler") / "ray-schema.json").read_text())
    jsonschema.validate(fillout_defaults(cluster), schema)
    broken = dict(cluster, docker=dict(cluster["docker"], imagee="typo"))
    with pytest.raises(jsonschema.ValidationError, match="imagee"):
        jsonschema.validate(fillout_defaults(broken), schema)


def test_cluster_nodes_run_the_image(cluster):
    images = {_containers(_yaml(KUBERAY / "raycluster.yaml"))[0]["image"]}
    assert cluster["docker"]["image"] in images
    gpu = [t for t in cluster["available_node_types"].values() if t["resources"].get("GPU")]
    assert gpu and all(t["docker"]["worker_image"] == cluster["docker"]["image"] + "-gpu" for t in gpu)
    for commands in ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        assert ".venv" not in " ".join(cluster[commands]), commands


def _travels(source: Path, excludes: list[str]) -> list[Path]:
    """The files rsync sends from `source` with Ray's `--exclude PATTERN` per rsync_exclude entry:
    a pattern without '/' matches a file's or folder's own name, at any depth."""
    sent = []
    for folder, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not any(fnmatch.fnmatch(d, p) for p in excludes)]
        sent += [Path(folder, f).relative_to(source) for f in files if not any(fnmatch.fnmatch(f, p) for p in excludes)]
    return sent


def test_cluster_copies_no_venv_git_or_runs(cluster):
    excludes = cluster["rsync_exclude"]
    assert all("/" not in p for p in excludes), "the check below reads patterns as names"
    assert {".venv", ".git", "runs"} <= set(excludes)
    assert set(cluster.get("cluster_synced_files", [])).isdisjoint({".", "./", str(REPO)})
    for target, source in cluster["file_mounts"].items():
        local = (REPO / source).resolve()
        if local.is_dir():
            sent = _travels(local, excludes)
            leaked = [p for p in sent if {".venv", ".git", "runs"} & set(p.parts)]
            assert not leaked, f"file_mounts {target}: would copy {leaked[:3]}"
            assert Path("scripts/install.sh") in sent or local != REPO


def test_dashboard_stays_on_the_head_loopback(cluster):
    head = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    readme = (REPO / "README.md").read_text()
    assert "ray dashboard cluster.yaml" in readme


# --- the container image -----------------------------------------------------------------------------

def test_image_and_pyproject_agree_on_python_and_ray():
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=rayproject/ray:(\S+)-py(\d)(\d+)$", dockerfile, re.M)
    assert base, "docker/Dockerfile: ARG BASE_IMAGE=rayproject/ray:<version>-py<XY>"
    ray_version, python = base.group(1), f"{base.group(2)}.{base.group(3)}"
    assert f"rayproject/ray:{ray_version}-py{base.group(2)}{base.group(3)}-gpu" in dockerfile
    assert f"ray=={ray_version}" in (REPO / "requirements.lock").read_text().split()
    project = __import__("tomllib").loads((REPO / "pyproject.toml").read_text())["project"]
    requires = SpecifierSet(project["requires-python"])
    assert python in requires and "3.10" not in requires, project["requires-python"]
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in requires


def test_image_installs_with_the_make_install_script():
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    runs = [line for line in dockerfile.splitlines() if line.startswith("RUN ")]
    assert runs and all("bash scripts/install.sh" in line and "VENV= " in line for line in runs)
    assert "scripts/install.sh" in (REPO / "Makefile").read_text()
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".venv", "runs", ".git", ".gpudata", ".whl"} <= ignored


def _fake_python(where: Path, log: Path) -> Path:
    """A real interpreter (a venv without pip) whose `-m pip` only records its arguments."""
    venv.create(where, with_pip=False)
    python = where / "bin" / "python"
    site = subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True)
    pip = Path(site.strip()) / "pip"
    pip.mkdir()
    (pip / "__init__.py").write_text("")
    (pip / "__main__.py").write_text(
        f"import sys\nwith open({str(log)!r}, 'a') as f:\n    f.write(sys.prefix + ' ' + ' '.join(sys.argv[1:]) + '\\n')\n")
    return python


def _install(checkout: Path, *args: str, **env: str) -> None:
    subprocess.run(["bash", "scripts/install.sh", *args], cwd=checkout, check=True, env={**os.environ, **env})


def test_install_script_into_a_venv_or_the_image_python(tmp_path):
    """scripts/install.sh as `make install` runs it (.venv, stamped: a second run installs nothing)
    and as docker/Dockerfile runs it (VENV= : into $PYTHON itself; --lock-only: the lock alone)."""
    checkout, log = tmp_path / "checkout", tmp_path / "pip.log"
    (checkout / "scripts").mkdir(parents=True)
    for rel in ("scripts/install.sh", "requirements.lock", "pyproject.toml"):
        shutil.copy(REPO / rel, checkout / rel)
    lock, editable = "install -q --no-deps -r requirements.lock", "install -q --no-deps -e ."

    _fake_python(checkout / ".venv", log)  # `make install` finds .venv and keeps it
    _install(checkout)
    _install(checkout)
    assert log.read_text().splitlines() == [f"{checkout / '.venv'} {cmd}" for cmd in
                                            ("install -q --upgrade pip", lock, editable)]
    assert len(list((checkout / ".venv").glob(".installed-*"))) == 1

    image = _fake_python(tmp_path / "image-python", log)
    log.unlink()
    shutil.rmtree(checkout / ".venv")
    _install(checkout, "--lock-only", VENV="", PYTHON=str(image))
    assert log.read_text().splitlines()[-1] == f"{tmp_path / 'image-python'} {lock}"
    assert not list((tmp_path / "image-python").glob(".installed-*"))
    _install(checkout, VENV="", PYTHON=str(image))
    assert log.read_text().splitlines()[-1] == f"{tmp_path / 'image-python'} {editable}"
    assert not (checkout / ".venv").exists()


# --- serve build ------------------------------------------------------------------------------------

def test_serve_build_writes_a_config_serve_deploy_accepts(tmp_path):
    """`serve build` takes an Application, not a builder: serve.app:app is the default application,
    built from $FACELAB_STORE (here: a store with a promoted sentiment run)."""
    from ray.serve.schema import ServeDeploySchema

    from facelab.store import ModelStore

    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"weights")
    store = ModelStore(str(tmp_path / "store"))
    store.promote("sentiment", store.save("sentiment", model, config={}, metrics={}, data_fingerprint="x"))
    serve = Path(sys.executable).with_name("serve")
    out = tmp_path / "serve_app.yaml"
    env = {**os.environ, "FACELAB_STORE": str(tmp_path / "store"), "FACELAB_GALLERY": str(tmp_path / "g.sqlite"),
           "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run([serve, "build", "serve.app:app", "-o", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    config = ServeDeploySchema.model_validate(yaml.safe_load(out.read_text()))
    [app] = config.applications
    assert app.import_path == "serve.app:app"
    assert {d.name for d in app.deployments} == {"Gateway", "GalleryModel", "sentiment"}
