"""The cscs profile forces NCCL onto the aws-ofi-nccl plugin (NCCL_NET, as CSCS's NCCL page asks) and leaves the
performance variables to the Container Engine's hook."""

from __future__ import annotations

import tomllib

from tests.launcher.test_render import render


def test_cscs_edf_sets_nccl_net_and_leaves_the_rest_to_the_hook(run_cli, workspace):
    run = render(run_cli, workspace, "cscs", "--nodes", "2")
    edf = tomllib.loads((run / "environment.toml").read_text())
    assert edf["env"]["NCCL_NET"] == "AWS Libfabric"
    assert edf["annotations"]["com"]["hooks"]["aws_ofi_nccl"]["enabled"] == "true"
    pinned = [name for name in edf["env"] if name.startswith(("FI_", "NCCL_NET_GDR", "NCCL_CROSS_NIC"))]
    assert pinned == [], f"the hook sets these with CSCS's values: {pinned}"
    # Not in the script too: one place for the job's environment.
    assert "NCCL_NET" not in (run / "job.sbatch").read_text()
