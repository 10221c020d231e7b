"""The run folder's records (gpucops/run_records.py): the header-aware log, rotated snapshots."""

from __future__ import annotations

from gpucops.run_records import RunLog, keep_snapshot, snapshots


def test_a_resumed_log_keeps_its_header_and_the_rows_up_to_the_step(tmp_path):
    path = tmp_path / "log.csv"
    log = RunLog(path, ["step", "loss"])
    for step in (1, 2, 3):
        log.write({"step": step, "loss": 0.5})
    log.close()
    RunLog(path, ["step", "loss"], step=2).close()
    assert path.read_text().split() == ["step,loss", "1,0.5", "2,0.5"]
    path.write_text("1,0.5,0.1,2.0\n2,0.4,0.1,2.0\n")  # a log written before the header
    RunLog(path, ["step", "loss", "lr_net", "seconds"], step=1).close()
    assert path.read_text().split() == ["step,loss,lr_net,seconds", "1,0.5,0.1,2.0"]


def test_snapshots_are_kept_by_count_oldest_removed(tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    for step in (5, 10, 15, 20):
        fresh = tmp_path / "new"  # replaced by rename, as save_checkpoint does
        fresh.write_text(f"step {step}")
        fresh.replace(checkpoint)
        keep_snapshot(checkpoint, step, keep=2)
    assert [p.name for p in snapshots(tmp_path)] == ["snapshot_15.pt", "snapshot_20.pt"]
    assert (tmp_path / "snapshot_15.pt").read_text() == "step 15"
    keep_snapshot(checkpoint, 25, keep=0)
    assert snapshots(tmp_path) == []
