"""infra/ configs: offline checks of the cluster launcher YAML against Ray's own schema and
Ray's autoscaler v2 scheduler (spot first), the KubeRay manifests' required fields, the MLflow
compose file's intent, and two shell snippets run for real: the RayJob entrypoint's retry logic
with a stub `python`, the GPU nodes' driver check with a stub `nvidia-smi`. No network, no cloud
API, no Docker."""
import copy
import inspect
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
CLUSTER_YAML = INFRA / "aws" / "cluster.yaml"
DOCKERFILE = INFRA / "k8s" / "Dockerfile"
# The lock inside the image, outside the path the AWS launcher mounts the repo over.
IMAGE_LOCK = "/opt/xfer/constraints.txt"

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
    assert config["file_mounts"]["~/xfer"] == "."
    assert "MLFLOW_TRACKING_URI=" in setup and "s3://" in setup and "RAY_AUTH_MODE=token" in setup
    _assert_no_secrets(CLUSTER_YAML)


def test_cluster_nodes_run_the_image_instead_of_installing_the_environment():
    """Every node runs the image built from infra/k8s/Dockerfile (docker:), nothing installs
    the ~7 GB environment at boot, GPU workers get their GPUs in the container, and a node whose
    synced lock differs from the image's stops with the fix."""
    config = _load(CLUSTER_YAML)
    docker = config["docker"]
    assert re.fullmatch(r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/xfer:ray2\.60\.0-py311-gpu",
                        docker["image"])
    assert docker["container_name"] and docker["pull_before_run"] is True
    commands = json.dumps({k: config[k] for k in config if k.endswith("_commands")})
    assert "pip install" not in commands and "venv" not in commands and "apt-get" not in commands
    setup = " ".join(config["setup_commands"])
    assert f"cmp -s ~/xfer/constraints.txt {IMAGE_LOCK}" in setup and "exit 1" in setup
    init = " ".join(config["initialization_commands"])
    assert "aws ecr get-login-password" in init and "docker login" in init
    assert docker["image"].split("/")[0] in init   # logs in to the registry the image is in
    head = config["head_node_type"]
    for name, node_type in config["available_node_types"].items():
        if name != head:
            assert "--gpus all" in node_type["docker"]["worker_run_options"], name
    # The image keeps the lock where the setup check looks, and installs from it.
    dockerfile = DOCKERFILE.read_text()
    assert f"COPY constraints.txt {IMAGE_LOCK}" in dockerfile
    assert f"pip install --no-cache-dir -r {IMAGE_LOCK}" in dockerfile


def test_image_build_context_leaves_out_the_venv_and_secrets():
    ignored = (INFRA / "k8s" / "Dockerfile.dockerignore").read_text().split()
    for pattern in ("**/.venv", ".git", "infra/mlflow/.env", "mlflow.db", "xfer_runs"):
        assert pattern in ignored, pattern


def _with_worker_resources(config: dict) -> dict:
    """`ray up` fills the worker types' `resources: {}` from EC2's instance-type API; the
    g5.12xlarge's numbers stand in for that cloud call."""
    from ray.autoscaler._private.util import prepare_config

    config = prepare_config(copy.deepcopy(config))
    for name, node_type in config["available_node_types"].items():
        if name != config["head_node_type"]:
            node_type["resources"] = {"CPU": 48, "GPU": 4}
    return config


def test_autoscaler_v2_starts_spot_first_and_on_demand_when_spot_fails():
    """The comment on `priority` says what Ray 2.60 does: `ray up` runs autoscaler v2, whose
    scheduler reads `priority` (v1 ignores it). Ray's own v2 scheduler, given this config and
    four 1-GPU trials, launches a spot node; when spot launches recently failed, on-demand."""
    from ray.autoscaler._private import commands
    from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig
    from ray.autoscaler.v2.scheduler import ResourceDemandScheduler, SchedulingRequest
    from ray.autoscaler.v2.utils import ResourceRequestUtil
    from ray.core.generated.autoscaler_pb2 import ResourceRequestByCount

    # The installed Ray's `ray up` turns v2 on unless RAY_UP_enable_autoscaler_v2=0.
    assert 'os.getenv("RAY_UP_enable_autoscaler_v2", "1") == "1"' in inspect.getsource(commands)
    config = _with_worker_resources(_load(CLUSTER_YAML))
    node_types = AutoscalingConfig(config, skip_content_hash=True).get_node_type_configs()
    spot = "worker.gpu.a10g.x4.spot"
    assert node_types[spot].priority > node_types["worker.gpu.a10g.x4"].priority

    def launched(recent_failures: dict) -> list:
        trials = ResourceRequestByCount(request=ResourceRequestUtil.make({"GPU": 1, "CPU": 1}),
                                        count=4)
        reply = ResourceDemandScheduler().schedule(SchedulingRequest(
            disable_launch_config_check=True, node_type_configs=node_types,
            max_num_nodes=config["max_workers"], resource_requests=[trials],
            recoverable_resource_availabilities=recent_failures))
        return [(launch.instance_type, launch.count) for launch in reply.to_launch]

    assert launched({}) == [(spot, 1)]
    assert launched({spot: 0.0}) == [("worker.gpu.a10g.x4", 1)]


# The GPU driver check of the AWS nodes (an initialization command, on the host), run with a
# stub `nvidia-smi` that answers `-L` with LIST_RC and the driver query with DRIVER.
NVIDIA_SMI_STUB = """#!/bin/sh
case "$1" in
  -L) [ "$LIST_RC" = 0 ] && echo "GPU 0: NVIDIA A10G (UUID: GPU-x)"; exit "$LIST_RC";;
  --query-gpu=driver_version) echo "$DRIVER";;
esac
"""


def _driver_check(tmp_path: Path, *, driver: str = "", list_rc: int = 0, stub: bool = True):
    (check,) = [c for c in _load(CLUSTER_YAML)["initialization_commands"] if "nvidia-smi" in c]
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "nvidia-smi").unlink(missing_ok=True)
    if stub:
        (bindir / "nvidia-smi").write_text(NVIDIA_SMI_STUB)
        (bindir / "nvidia-smi").chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "DRIVER": driver, "LIST_RC": str(list_rc)}
    # Ray's launcher runs initialization commands with bash over SSH.
    return subprocess.run(["/bin/bash", "-c", check], env=env, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("driver, ok", [("580.65.06", True), ("590.44.01", True),
                                        ("570.172.08", False), ("535.104.05", False),
                                        ("", False), ("N/A", False)])
def test_gpu_node_with_a_driver_older_than_580_stops(tmp_path, driver, ok):
    done = _driver_check(tmp_path, driver=driver)
    assert (done.returncode == 0) is ok, done.stderr
    if not ok:
        assert "older than 580" in done.stderr and "infra/README.md" in done.stderr


def test_node_without_a_gpu_passes_the_driver_check(tmp_path):
    """The head: the AMI ships nvidia-smi, which fails without a GPU; or no nvidia-smi at all."""
    if Path("/usr/bin/nvidia-smi").exists() or Path("/bin/nvidia-smi").exists():
        pytest.skip("a real nvidia-smi on PATH would answer instead of the missing stub")
    assert _driver_check(tmp_path, list_rc=9).returncode == 0
    assert _driver_check(tmp_path, stub=False).returncode == 0


def test_every_config_that_brings_up_gpu_nodes_states_the_driver():
    for path in (CLUSTER_YAML, INFRA / "aws" / "README.md", INFRA / "k8s" / "raycluster.yaml",
                 INFRA / "k8s" / "rayjob.yaml", INFRA / "k8s" / "README.md", DOCKERFILE,
                 INFRA / "README.md"):
        assert re.search(r"(driver\s*)?(>=|≥)\s*580", path.read_text()), path


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
    # S3 through the service account's IAM role (IRSA / Pod Identity), on every pod.
    for group in [head] + spec["workerGroupSpecs"]:
        assert group["template"]["spec"]["serviceAccountName"] == "xfer-ray"
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
        assert not [e for e in container.get("env", []) if e["name"].startswith("AWS_")]


def test_no_static_aws_keys_for_kubernetes():
    """IRSA / Pod Identity instead of keys in a Secret: the service account names the role, and
    neither the manifests nor the README's `kubectl create secret` carry AWS keys."""
    (account,) = yaml.safe_load_all((INFRA / "k8s" / "serviceaccount.yaml").read_text())
    assert account["kind"] == "ServiceAccount" and account["metadata"]["name"] == "xfer-ray"
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+",
                        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])
    for path in sorted((INFRA / "k8s").iterdir()):
        text = path.read_text()
        assert "AWS_ACCESS_KEY_ID=" not in text and "AWS_SECRET_ACCESS_KEY=" not in text, path
        _assert_no_secrets(path)


def test_kuberay_version_stated_is_the_one_backofflimit_needs():
    """spec.backoffLimit arrived in KubeRay 1.2 (activeDeadlineSeconds in 1.1)."""
    for path in (INFRA / "k8s" / "rayjob.yaml", INFRA / "k8s" / "README.md"):
        text = path.read_text()
        assert re.search(r"KubeRay( operator)?\s*\**(>=|≥)\s*1\.2", text, re.I), path
        assert not re.search(r"KubeRay( operator)?\s*(>=|≥)\s*1\.1\b", text, re.I), path


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
    # A bound on a hung sweep's bill; KubeRay does not retry a job stopped by it.
    deadline = job["spec"]["activeDeadlineSeconds"]
    assert isinstance(deadline, int) and 3600 <= deadline <= 7 * 86400
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
