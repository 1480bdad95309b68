"""bench/training_report.py: the validated steps of a run's logs, stage by stage, as one table."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("training_report", ROOT / "bench" / "training_report.py")
training_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(training_report)

HEADER = "step,lr,loss,images_per_s,val_abs_rel,val_delta1\n"


def test_stages_in_training_order_with_their_validated_steps(tmp_path, capsys):
    for stage, rows in {"unet": "20,1e-3,0.5,10.0,,\n40,1e-3,0.4,12.0,0.2,0.7\n",
                        "vae": "10,1e-3,0.1,5.0,0.05,0.96\n"}.items():
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "log.csv").write_text(HEADER + rows)
    assert training_report.main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{tmp_path} logs written ")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[3:]]
    assert cells == [["vae", "10", "0.0500", "0.9600", "5.0"], ["unet", "40", "0.2000", "0.7000", "11.0"]]


def test_a_folder_without_logs_is_a_clear_error(tmp_path, capsys):
    assert training_report.main([str(tmp_path)]) == 2
    assert "no log.csv" in capsys.readouterr().err
