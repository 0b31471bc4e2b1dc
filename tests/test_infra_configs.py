"""infra/ configs: offline checks of the cluster launcher YAML against Ray's own schema, the
KubeRay manifests' required fields, the MLflow compose file's intent, and the RayJob
entrypoint's retry logic run for real with a stub `python`. No network, no cloud API."""
import copy
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
CLUSTER_YAML = INFRA / "aws" / "cluster.yaml"

# AWS access key ids, secret-looking assignments, passwords in URIs.
SECRET_PATTERNS = [re.compile(p) for p in (
    r"AKIA[0-9A-Z]{16}", r"aws_secret_access_key\s*[:=]\s*\S", r"aws_access_key_id\s*[:=]\s*\S",
    r"password\s*[:=]\s*[^\s$]", r"://[^/\s:@]+:[^/\s@$]+@")]


def _load(path: Path):
    return yaml.safe_load(path.read_text())


def _assert_no_secrets(path: Path):
    text = path.read_text()
    for pattern in SECRET_PATTERNS:
        assert not pattern.search(text), f"{path.relative_to(ROOT)} matches {pattern.pattern}"


# --- AWS cluster launcher ------------------------------------------------------------------

def test_cluster_yaml_validates_against_rays_schema():
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _load(CLUSTER_YAML)
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    # What `ray up` does before any cloud call: merge AWS defaults, then Ray's own validation.
    validate_config(prepare_config(copy.deepcopy(config)))


def test_cluster_yaml_intent():
    config = _load(CLUSTER_YAML)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert "GPU" not in head["resources"] and head["resources"].get("CPU") == 0
    gpu_types = {name: t for name, t in types.items()
                 if name != config["head_node_type"]
                 and t["node_config"]["InstanceType"].split(".")[0] in {"g5", "g6", "p4d", "p5"}}
    assert gpu_types, "no GPU worker type"
    assert all(t["max_workers"] > 0 and t.get("min_workers", 0) == 0 for t in gpu_types.values())
    assert any(t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
               for t in gpu_types.values())
    for t in types.values():
        # Without SecurityGroupIds Ray creates a group with SSH open to 0.0.0.0/0.
        assert t["node_config"]["SecurityGroupIds"]
        assert "Name" in t["node_config"]["IamInstanceProfile"]

    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start
    assert "0.0.0.0" not in json.dumps(config)   # comments aside: no command binds to all
    setup = " ".join(config["setup_commands"])
    assert "-c constraints.txt" in setup and "pip install" in setup
    assert config["file_mounts"]["~/xfer"] == "."
    assert "MLFLOW_TRACKING_URI=" in setup and "s3://" in setup and "RAY_AUTH_MODE=token" in setup
    _assert_no_secrets(CLUSTER_YAML)


def test_security_group_script_opens_only_ssh_and_intra_cluster():
    script = (INFRA / "aws" / "security_group.sh").read_text()
    assert "0.0.0.0/0" not in script
    rules = re.findall(r"--ip-permissions \"([^\"]+)\"", script)
    assert rules == ["IpProtocol=tcp,FromPort=22,ToPort=22,IpRanges=[{CidrIp=$ADMIN_CIDR}]",
                     "IpProtocol=-1,UserIdGroupPairs=[{GroupId=$sg}]"]
    subprocess.run(["bash", "-n", str(INFRA / "aws" / "security_group.sh")], check=True)


# --- KubeRay -------------------------------------------------------------------------------

def _check_cluster_spec(spec: dict):
    head = spec["headGroupSpec"]
    assert head["template"]["spec"]["containers"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert isinstance(head["rayStartParams"], dict)
    for group in spec["workerGroupSpecs"]:
        for field in ("groupName", "replicas", "minReplicas", "maxReplicas", "template",
                      "rayStartParams"):
            assert field in group, field
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["maxReplicas"] > 0
        pod = group["template"]["spec"]
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
        limits = pod["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
    for container in [c for g in [head] + spec["workerGroupSpecs"]
                      for c in g["template"]["spec"]["containers"]]:
        assert "2.60.0" in container["image"] and "gpu" in container["image"]
        assert {"secretRef": {"name": "xfer-secrets"}} in container["envFrom"]
        assert not [e for e in container.get("env", []) if "value" in e and (
            "PASSWORD" in e["name"] or "SECRET" in e["name"] or e["name"].startswith("MLFLOW"))]


def test_raycluster_manifest():
    docs = list(yaml.safe_load_all((INFRA / "k8s" / "raycluster.yaml").read_text()))
    assert len(docs) == 1 and docs[0]["apiVersion"] == "ray.io/v1"
    assert docs[0]["kind"] == "RayCluster" and docs[0]["metadata"]["name"]
    _check_cluster_spec(docs[0]["spec"])
    _assert_no_secrets(INFRA / "k8s" / "raycluster.yaml")
    assert "FROM rayproject/ray:2.60.0-py311-gpu" in (INFRA / "k8s" / "Dockerfile").read_text()


def _rayjob() -> dict:
    (doc,) = yaml.safe_load_all((INFRA / "k8s" / "rayjob.yaml").read_text())
    return doc


def test_rayjob_manifest():
    job = _rayjob()
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"]
    assert "sweeps/pdf_grid.py" in job["spec"]["entrypoint"]
    assert "--resume" in job["spec"]["entrypoint"]
    assert "s3://" not in job["spec"]["entrypoint"]          # storage comes from XFER_STORAGE
    assert job["spec"]["backoffLimit"] >= 1
    assert "rayClusterSpec" in job["spec"] or "clusterSelector" in job["spec"]
    _check_cluster_spec(job["spec"]["rayClusterSpec"])
    storage = [e["value"] for c in job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
               ["spec"]["containers"] for e in c["env"] if e["name"] == "XFER_STORAGE"]
    assert storage and storage[0].startswith("s3://")
    _assert_no_secrets(INFRA / "k8s" / "rayjob.yaml")


# The entrypoint's shell logic, run with a stub `python` that logs its args and exits with the
# code scripted for the --resume call and for the fresh start.
STUB = """#!/bin/sh
echo "$*" >> "$XFER_TEST_LOG"
case "$*" in *--resume*) exit "$RESUME_RC";; *) exit "$FRESH_RC";; esac
"""


def _run_entrypoint(tmp_path: Path, resume_rc: int, fresh_rc: int):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    stub = bindir / "python"
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp_path / "calls.log"
    log.write_text("")
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "XFER_TEST_LOG": str(log), "XFER_HOME": str(tmp_path),
           "XFER_STORAGE": "s3://bucket/xfer", "RESUME_RC": str(resume_rc), "FRESH_RC": str(fresh_rc)}
    # Ray's job supervisor runs the entrypoint with subprocess(shell=True), i.e. /bin/sh -c.
    proc = subprocess.run(["/bin/sh", "-c", _rayjob()["spec"]["entrypoint"]], env=env,
                          cwd="/", timeout=30)
    return proc.returncode, log.read_text().splitlines()


def test_rayjob_entrypoint_nothing_to_resume_starts_fresh(tmp_path):
    rc, calls = _run_entrypoint(tmp_path, resume_rc=2, fresh_rc=0)
    assert rc == 0
    assert len(calls) == 2 and "--resume" in calls[0] and "--resume" not in calls[1]
    assert all("sweeps/pdf_grid.py --storage s3://bucket/xfer" in c for c in calls)


def test_rayjob_entrypoint_fresh_start_failure_is_the_jobs_exit(tmp_path):
    rc, calls = _run_entrypoint(tmp_path, resume_rc=2, fresh_rc=1)
    assert rc == 1 and len(calls) == 2


def test_rayjob_entrypoint_genuine_failure_is_not_masked(tmp_path):
    rc, calls = _run_entrypoint(tmp_path, resume_rc=1, fresh_rc=0)
    assert rc == 1, "a failed resume must fail the job so KubeRay retries (and resumes) it"
    assert len(calls) == 1, "a failed resume must not start a second sweep"


def test_rayjob_entrypoint_successful_resume_runs_one_sweep(tmp_path):
    rc, calls = _run_entrypoint(tmp_path, resume_rc=0, fresh_rc=0)
    assert rc == 0 and len(calls) == 1 and "--resume" in calls[0]


def test_naive_or_chain_would_mask_failures(tmp_path):
    """Why the entrypoint spells out rc: `a || [ $? -ne 2 ] || b` exits 0 when a exits 1."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").write_text("#!/bin/sh\nexit 1\n")
    (bindir / "python").chmod(0o755)
    naive = "python x --resume || [ $? -ne 2 ] || python x"
    proc = subprocess.run(["/bin/sh", "-c", naive], env={"PATH": f"{bindir}:/usr/bin:/bin"})
    assert proc.returncode == 0


# --- MLflow server -------------------------------------------------------------------------

def _compose_default(value: str) -> str:
    """Resolve compose's ${VAR:-default} / ${VAR:?msg} as with an empty environment."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def test_mlflow_compose_intent():
    compose = _load(INFRA / "mlflow" / "compose.yaml")
    mlflow, postgres = compose["services"]["mlflow"], compose["services"]["postgres"]
    command = [_compose_default(part) for part in mlflow["command"]]
    assert command[:2] == ["mlflow", "server"]
    assert "--app-name=basic-auth" in command
    backend = [c for c in command if c.startswith("--backend-store-uri=")]
    assert backend and backend[0].split("=", 1)[1].startswith("postgresql+psycopg2://")
    artifacts = [c for c in command if c.startswith(("--artifacts-destination=",
                                                      "--default-artifact-root="))]
    assert artifacts and artifacts[0].split("=", 1)[1].startswith("s3://")
    ports = [_compose_default(p) for p in mlflow["ports"]]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports)
    assert "ports" not in postgres
    assert mlflow["environment"]["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow/basic_auth.ini"
    for name in ("PGPASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD"):     # only from .env, no default
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", mlflow["environment"][name])
    _assert_no_secrets(INFRA / "mlflow" / "compose.yaml")


def test_basic_auth_ini_uses_postgres_and_holds_no_password():
    import configparser

    ini = configparser.ConfigParser()
    ini.read(INFRA / "mlflow" / "basic_auth.ini")
    assert ini["mlflow"]["database_uri"].startswith("postgresql+psycopg2://")
    assert "admin_password" not in ini["mlflow"]
    _assert_no_secrets(INFRA / "mlflow" / "basic_auth.ini")
    assert "mlflow_auth" in (INFRA / "mlflow" / "initdb" / "10-auth-db.sql").read_text()
