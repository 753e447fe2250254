import pandas as pd

from fmnist_dvc.experiments.budget_plot import BUDGET_GID, figure, group


def test_runs_of_one_preset_share_a_group() -> None:
    assert {group(n) for n in ("cnn-fast-s1", "cnn-fast-s2", "cnn-fast-s3-rerun")} == {"cnn-fast"}
    assert group("cnn-long-s1") == "cnn-long" and group("fast") == "fast"


def test_budget_lines_appear_once_the_runs_reach_them() -> None:
    curve = pd.DataFrame({"minutes": [1.0, 5.0, 9.5], "accuracy": [0.88, 0.92, 0.93]})
    second = pd.DataFrame({"minutes": [1.1, 5.2, 9.0], "accuracy": [0.87, 0.91, 0.925]})
    fig = figure(
        {
            "cnn-fast-s1": (curve, {"accuracy": 0.93, "tta_accuracy": 0.935}),
            "cnn-fast-s2": (second, {"accuracy": 0.92}),  # same group: drawn dashed
        }
    )
    ax = fig.axes[0]
    budgets = [line.get_xdata()[0] for line in ax.get_lines() if line.get_gid() == BUDGET_GID]
    assert budgets == [10]  # 30 minutes is far beyond a 9.5-minute run
    # The group's second run is dashed too (it starts at 1.1 minutes), and not taken for a budget.
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    runs = [line.get_label() for line in dashed if line.get_gid() != BUDGET_GID]
    assert runs == ["cnn-fast-s2 (validation)"]
    star = [line for line in ax.get_lines() if line.get_marker() == "*" and len(line.get_xdata())]
    assert (star[0].get_xdata()[0], star[0].get_ydata()[0]) == (9.5, 0.935)  # the TTA accuracy, at the end
