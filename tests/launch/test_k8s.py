"""launch/k8s/render.sh: the rendered JobSet, its escaping and its errors."""

from __future__ import annotations

import re

import pytest

from tests.launch.common import RENDER, TRAIN, ok, run


def _render(env, cwd, n=4, gpus=8, train=TRAIN, extra=()):
    return "\n".join(ok(RENDER, ["--name=cpt-run1", "--image=ghcr.io/acme/cpt-jax:v1", f"--num_processes={n}",
                                 f"--gpus_per_pod={gpus}", *extra, "--", *train], env, cwd)) + "\n"


def _structural_checks(text: str, n: int) -> None:
    """What must hold of the manifest text whether or not a YAML parser is around."""
    assert re.search(r"^apiVersion: jobset\.x-k8s\.io/v1alpha2$", text, re.M)
    assert re.search(r"^kind: JobSet$", text, re.M)
    assert re.search(rf"^\s+parallelism: {n}$", text, re.M)
    assert re.search(rf"^\s+completions: {n}$", text, re.M)
    assert re.search(r"^\s+completionMode: Indexed$", text, re.M)
    assert re.search(r"^\s+- --coordinator_address=\$\(COORDINATOR\):1234$", text, re.M)
    assert re.search(rf"^\s+- --num_processes={n}$", text, re.M)
    assert re.search(r"^\s+- --process_id=\$\(JOB_COMPLETION_INDEX\)$", text, re.M)
    assert re.search(r"^\s+value: cpt-run1-workers-0-0\.cpt-run1$", text, re.M)
    assert "fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']" in text
    assert not re.search(r"__[A-Z_]+__", text), "a placeholder was left unfilled"
    assert "\t" not in text


def _yaml():
    """The yaml module when installed; without it the tests keep to the structural checks."""
    try:
        import yaml
    except ImportError:
        return None
    return yaml


def _container(doc):
    rjob = doc["spec"]["replicatedJobs"][0]
    return rjob, rjob["template"]["spec"], rjob["template"]["spec"]["template"]["spec"]["containers"][0]


def test_render_jobset(tripwire, tmp_path):
    env, _ = tripwire
    text = _render(env, tmp_path, n=4, gpus=8)
    _structural_checks(text, 4)
    if (yaml := _yaml()) is None:
        return
    doc = yaml.safe_load(text)
    assert doc["apiVersion"] == "jobset.x-k8s.io/v1alpha2" and doc["kind"] == "JobSet"
    assert doc["metadata"]["name"] == "cpt-run1"
    assert doc["spec"]["network"]["enableDNSHostnames"] is True
    rjob, job, c = _container(doc)
    assert rjob["name"] == "workers" and rjob["replicas"] == 1
    assert job["parallelism"] == job["completions"] == 4 and job["completionMode"] == "Indexed"
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    assert c["image"] == "ghcr.io/acme/cpt-jax:v1"
    assert c["command"] == ["python3", "-m", "cpt_jax.train"]
    assert c["args"] == [*TRAIN, "--coordinator_address=$(COORDINATOR):1234", "--num_processes=4",
                         "--process_id=$(JOB_COMPLETION_INDEX)"]
    env_vars = {e["name"]: e for e in c["env"]}
    # JobSet's pod DNS: <jobset>-<replicated job>-<job index>-<pod index>.<jobset>
    assert env_vars["COORDINATOR"]["value"] == "cpt-run1-workers-0-0.cpt-run1"
    assert env_vars["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']")
    assert c["resources"] == {"requests": {"nvidia.com/gpu": 8}, "limits": {"nvidia.com/gpu": 8}}
    assert c["ports"][0]["containerPort"] == 1234


def test_render_escapes_kubernetes_expansion_and_quotes(tripwire, tmp_path):
    env, _ = tripwire
    train = ["--gin.TrainConfig.output_dir=/runs/$(date)", "--gin_param=A.b = 'x: y' # not a comment", "--x=&*!|>"]
    text = _render(env, tmp_path, n=2, train=train, extra=["--port=4321", "--dry_run"])
    assert "              - '--gin.TrainConfig.output_dir=/runs/$$(date)'\n" in text
    assert "              - '--gin_param=A.b = ''x: y'' # not a comment'\n" in text
    if (yaml := _yaml()) is None:
        return
    _, _, c = _container(yaml.safe_load(text))
    # Kubernetes turns $$( back into $(, so the process gets the flag as written.
    assert c["args"][:3] == ["--gin.TrainConfig.output_dir=/runs/$$(date)", train[1], train[2]]
    assert c["args"][3] == "--coordinator_address=$(COORDINATOR):4321"


def test_render_without_gpus_or_train_flags(tripwire, tmp_path):
    env, _ = tripwire
    text = _render(env, tmp_path, n=1, gpus=0, train=[])
    _structural_checks(text, 1)
    assert "nvidia.com/gpu:" not in text and "resources:" not in text
    if (yaml := _yaml()) is None:
        return
    _, job, c = _container(yaml.safe_load(text))
    assert "resources" not in c
    assert c["args"] == ["--coordinator_address=$(COORDINATOR):1234", "--num_processes=1",
                         "--process_id=$(JOB_COMPLETION_INDEX)"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image=i", "--num_processes=2", "--gpus_per_pod=1"], "--name is required"),
        (["--name=a", "--num_processes=2", "--gpus_per_pod=1"], "--image is required"),
        (["--name=a", "--image=i", "--gpus_per_pod=1"], "--num_processes is required"),
        (["--name=a", "--image=i", "--num_processes=2"], "--gpus_per_pod is required"),
        (["--name=a", "--image=i", "--num_processes=0", "--gpus_per_pod=1"], "--num_processes must be"),
        (["--name=Bad_Name", "--image=i", "--num_processes=2", "--gpus_per_pod=1"], "DNS label"),
        (["--name=" + "a" * 60, "--image=i", "--num_processes=2", "--gpus_per_pod=1"], "too long"),
        (["--name=a", "--image=i x", "--num_processes=2", "--gpus_per_pod=1"], "--image must not"),
    ],
)
def test_render_bad_options_fail_with_usage(tripwire, tmp_path, args, message):
    env, _ = tripwire
    result = run(RENDER, args, env, tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "usage: launch/k8s/render.sh" in result.stderr
    assert result.stdout == ""


# -- the scripts themselves -------------------------------------------------------------------------
