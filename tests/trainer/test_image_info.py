"""trainer/reporting/image_info.py: the line each node logs about the image it runs in (proof the job ran in it)."""

from __future__ import annotations

from hpcft.trainer.reporting import image_info


def test_an_hpcft_image_is_named_with_its_os(tmp_path, monkeypatch, capsys):
    marker, release = tmp_path / "hpcft-image", tmp_path / "os-release"
    marker.write_text("HPCFT_IMAGE_ID=abc123\nHPCFT_VERSION=0.1.0\nHPCFT_IMAGE_BUILT=2026-12-07T22:00:00Z\n")
    release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')
    monkeypatch.setattr(image_info, "MARKER", marker)
    monkeypatch.setattr(image_info, "OS_RELEASE", release)
    monkeypatch.setattr(image_info.socket, "gethostname", lambda: "node2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    image_info.log_image()
    assert capsys.readouterr().out == (
        "hpcft: node2 runs in image abc123 (Debian GNU/Linux 12 (bookworm), built 2026-12-07T22:00:00Z)\n"
    )
    monkeypatch.setenv("LOCAL_RANK", "1")  # one line per node, not per process
    image_info.log_image()
    assert capsys.readouterr().out == ""


def test_a_bare_host_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(image_info, "MARKER", tmp_path / "missing")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert image_info.describe_image() is None
    image_info.log_image()
    assert "runs in no hpcft image" in capsys.readouterr().out
