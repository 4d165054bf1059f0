"""Shell safety and secrets, executed for real: hostile job names, env values and paths go through render, sbatch,
srun and bash on the local cluster, and the secrets of the submitting shell reach the job without being written."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm


def hostile(canary: Path, tag: str) -> str:
    """Text that runs `touch <canary>-<tag>-N` if any shell evaluates it instead of keeping it as text."""
    return (
        f"a b \"dq\" 'sq' $(touch {canary}-{tag}-1) `touch {canary}-{tag}-2`; touch {canary}-{tag}-3 "
        f"&& touch {canary}-{tag}-4 | cat > {canary}-{tag}-5"
    )


def test_injected_text_is_carried_literally_and_never_runs(workspace, run_cli):
    canary = workspace.root / "canary"
    env_value = hostile(canary, "env")
    out_dir = workspace.root / f"out $(touch {canary}-outdir) `x`; y"
    run_dir = workspace.root / f"run dir $(touch {canary}-rundir); `touch {canary}-rundir2`"
    config = workspace.root / "hostile.yaml"
    config.write_text(
        "base_model: none\ndatasets:\n  - path: data.jsonl\n    type: completion\n"
        f"output_dir: {json.dumps(str(out_dir))}\n"
        "launch:\n"
        f"  job_name: {json.dumps('job $(touch canary-job) `touch canary-job2`; x')}\n"
        "  nodes: 2\n"
        "  env:\n"
        f"    INJ: {json.dumps(env_value)}\n"
        "    HPCFT_FAKE_SHOW_ENV: INJ\n"
    )
    result = run_cli("submit", "--profile", "localtest", config, "--out", run_dir, "--follow")
    assert result.code == 0, result.out + result.err
    assert result.out.count(f"env INJ={env_value}") == 2  # both nodes got the exact text
    assert (out_dir / "metrics.jsonl").is_file()  # the odd output_dir was used as the path it is
    # The hostile paths themselves contain folders named "canary-outdir) `x`; y" etc.; a command that ran would
    # have made a plain `canary-<tag>` file.
    ran = sorted(
        {
            str(p)
            for p in [*workspace.root.rglob("canary*"), *Path(run_dir).rglob("canary*")]
            if re.fullmatch(r"canary-[\w-]+", p.name)
        }
    )
    assert ran == [], f"injected commands ran: {ran}"


def test_secrets_reach_the_job_and_no_written_file_contains_them(workspace, run_cli, monkeypatch):
    values = {
        "HF_TOKEN": f"hf_{secrets.token_hex(16)}",
        "WANDB_API_KEY": secrets.token_hex(20),
        "MY_SITE_TOKEN": secrets.token_hex(12),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    profile = workspace.root / "profiles" / "withsecrets.yaml"
    profile.write_text("extends: localtest\nsecret_env: [MY_SITE_TOKEN]\n")
    names = ",".join(values)
    result = run_cli(
        "submit", "--profile", "withsecrets", workspace.config, "--follow", f"launch.env.HPCFT_FAKE_HASH_ENV='{names}'"
    )
    assert result.code == 0, result.out + result.err
    for name, value in values.items():
        assert result.out.count(f"sha256 {name}={hashlib.sha256(value.encode()).hexdigest()}") == 2, name
    written = [p for p in workspace.root.rglob("*") if p.is_file()]
    assert any(p.name == "job.sbatch" for p in written) and any(p.suffix == ".out" for p in written)
    leaked = [str(p) for p in written for v in values.values() if v.encode() in p.read_bytes()]
    assert leaked == []
