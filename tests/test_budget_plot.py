import pandas as pd

from fmnist_dvc.budget_plot import figure, group


def test_runs_of_one_preset_share_a_group() -> None:
    assert {group(n) for n in ("cnn-fast-s1", "cnn-fast-s2", "cnn-fast-s3-rerun")} == {"cnn-fast"}
    assert group("cnn-long-s1") == "cnn-long" and group("fast") == "fast"


def test_budget_lines_appear_once_the_runs_reach_them() -> None:
    curve = pd.DataFrame({"minutes": [1.0, 5.0, 9.5], "accuracy": [0.88, 0.92, 0.93]})
    fig = figure({"cnn-fast-s1": (curve, {"accuracy": 0.93, "tta_accuracy": 0.935})})
    ax = fig.axes[0]
    budgets = [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert budgets == [10]  # 30 minutes is far beyond a 9.5-minute run
    star = [line for line in ax.get_lines() if line.get_marker() == "*" and len(line.get_xdata())]
    assert (star[0].get_xdata()[0], star[0].get_ydata()[0]) == (9.5, 0.935)  # the TTA accuracy, at the end
