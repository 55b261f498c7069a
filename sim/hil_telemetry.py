"""The MCU's TELEMETRY during a hardware-in-the-loop run, and its plot (`zima sim run`
writes telemetry.png): battery voltage, each track's target and measured speed, motor duty,
with the episodes shaded by outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zima.onboard.runtime import Runtime

__all__ = ["TelemetryLog", "plot_telemetry"]


@dataclass
class TelemetryLog:
    """The MCU's TELEMETRY sampled by the episode loop (one row per new frame)."""

    columns: tuple[str, ...] = ("t_s", "battery_mv", "target_left_mm_s", "vel_left_mm_s",
                                "target_right_mm_s", "vel_right_mm_s", "out_left_permille",
                                "out_right_permille")
    rows: list[tuple[float, ...]] = field(default_factory=list)
    episodes: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, outcome
    _last_seq: int = -1
    _t0_ms: int | None = None

    def sample(self, runtime: Runtime) -> None:
        state = runtime.link.state if runtime.link.connected else None
        if state is None or state.seq == self._last_seq:
            return
        self._last_seq = state.seq
        t = state.telemetry
        if self._t0_ms is None:
            self._t0_ms = t.mcu_time_ms
        self.rows.append(((t.mcu_time_ms - self._t0_ms) / 1000.0, t.battery_mv,
                          t.target_left_mm_s, t.vel_left_mm_s, t.target_right_mm_s,
                          t.vel_right_mm_s, t.out_left_permille, t.out_right_permille))

    def now_s(self) -> float:
        return self.rows[-1][0] if self.rows else 0.0

    def array(self) -> np.ndarray:
        """[n_rows, len(columns)] float64."""
        return np.array(self.rows, np.float64).reshape(-1, len(self.columns))


def plot_telemetry(log: TelemetryLog, path: Path) -> Path:
    """Battery voltage, each track's target and measured speed, and motor duty over time."""
    import matplotlib  # noqa: PLC0415 -- only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    data = log.array()  # [n, columns]
    col = {name: data[:, i] for i, name in enumerate(log.columns)}
    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    axes[0].plot(col["t_s"], col["battery_mv"] / 1000, color="tab:green")
    axes[0].set_ylabel("battery (V)")
    for ax, side in ((axes[1], "left"), (axes[2], "right")):
        ax.plot(col["t_s"], col[f"target_{side}_mm_s"], label="target", color="tab:gray")
        ax.plot(col["t_s"], col[f"vel_{side}_mm_s"], label="measured", color="tab:blue")
        ax.set_ylabel(f"{side} track (mm/s)")
        ax.legend(loc="upper right", fontsize="small")
    for side, color in (("left", "tab:orange"), ("right", "tab:purple")):
        axes[3].plot(col["t_s"], col[f"out_{side}_permille"] / 10, label=side, color=color)
    axes[3].set_ylabel("motor duty (%)")
    axes[3].set_xlabel("MCU time (s)")
    axes[3].legend(loc="upper right", fontsize="small")
    for start, end, outcome in log.episodes:
        for ax in axes:
            ax.axvspan(start, end, color="tab:green" if outcome == "success" else "tab:red",
                       alpha=0.06)
        axes[0].annotate(outcome, ((start + end) / 2, 1.0), xycoords=("data", "axes fraction"),
                         ha="center", va="bottom", fontsize="small")
    fig.suptitle("MCU telemetry (TELEMETRY frames through the onboard runtime)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
