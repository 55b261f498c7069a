"""The real firmware on the emulated board: loop timing, costs in cycles, sizes, link rate.

    .venv/bin/python bench/firmware_bench.py

Builds the firmware and the emulator (make, no-ops when up to date), then prints one
table. Cycle figures come from the firmware's probe markers: the firmware writes a
region id to GPIOR0 (main loop) or GPIOR1 (ISRs) on entry and 0x80|id on exit
(firmware/src/probe.h, 1 cycle each); the emulator records the cycle count of every such
write (firmware/emulator/probes.c). So the control tick's rate and jitter are the
begin-to-begin distances of its region, exact to the cycle, and costs are exit minus
entry (interrupts taken meanwhile included; an ISR's prologue and epilogue excluded).

Phases: (1) unpaced, no host: emulator speed when idle, TELEMETRY cost; (2) unpaced,
DRIVE once per TELEMETRY: speed when driving, control tick, encoder ISR, DRIVE receive
cost; (3) paced at real time: telemetry_hz raised until TELEMETRY sequence numbers show
gaps or the MCU counts tx_dropped. Takes about 25 s.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import record  # noqa: E402
from tests.firmware.mcu import Mcu  # noqa: E402 - the HIL tests' client
from zima.emulator import EmulatedBoard, EmulatorConfig, Probes  # noqa: E402
from zima.protocol import Drive, Heartbeat, ParamId, Telemetry  # noqa: E402

F_CPU = 16_000_000
CONTROL_HZ = 200
CONTROL, RX, TX_IDLE, TX_SENT = 1, 2, 3, 4  # firmware/src/probe.h
ENCODER_ISR = 1
TELEMETRY_RATES_HZ = (50, 100, 150, 200)  # 200 is telemetry_hz's maximum
RATE_WINDOW_MS = 2000
HEADLINES = ("flash", "static RAM", "control tick rate", "control tick jitter (worst)",
             "control tick cost", "max telemetry rate, no frame lost")  # in the common table

Row = tuple[str, str, str]


def build() -> None:
    for makefile in ("firmware/avr.mk", "firmware/emulator/emulator.mk"):
        subprocess.run(["make", "-s", "-f", makefile, "-j4"], cwd=ROOT, check=True)


def board(speed: float) -> EmulatedBoard:
    return EmulatedBoard(EmulatorConfig(speed=speed, state_hz=0))


def speed_factor(emu: EmulatedBoard, wall_s: float) -> float:
    s0, t0 = emu.state().time_us, time.monotonic()
    time.sleep(wall_s)
    s1, t1 = emu.state().time_us, time.monotonic()
    return (s1 - s0) / 1e6 / (t1 - t0)


def sizes() -> list[Row]:
    size = dict(ln.split() for ln in (ROOT / "build/avr/size.txt").read_text().splitlines())
    return [
        ("flash", f"{int(size['flash_bytes']):,} B", f"of {int(size['flash_max']):,} B allowed"),
        ("static RAM", f"{int(size['ram_bytes']):,} B", f"of {int(size['ram_max']):,} B allowed"),
    ]


def idle_phase() -> list[Row]:
    with board(speed=0) as emu:
        time.sleep(0.5)
        emu.clear_probes()
        factor = speed_factor(emu, 2.0)
        probes = emu.probes()
    sent, idle = probes.main[TX_SENT], probes.main[TX_IDLE]
    return [
        ("emulator speed, idle (no host)", f"{factor:.1f}x", "emulated s per wall s, unpaced"),
        ("poll_tx sending one TELEMETRY", f"{sent.mean:,.0f} cyc",
         f"min {sent.min:,}, max {sent.max:,}; idle poll_tx {idle.mean:,.0f}"),
    ]  # fmt: skip


def driving_phase() -> list[Row]:
    with board(speed=0) as emu:
        mcu = Mcu.open(emu.port)
        try:
            mcu.handshake()
            emu.clear_probes()
            drives = 0

            def drive(_t: Telemetry) -> None:
                nonlocal drives
                mcu.send(Drive(400, -400))
                drives += 1

            t0, s0 = time.monotonic(), emu.state().time_us
            start = mcu.telemetry().mcu_time_ms
            mcu.until(lambda t: t.mcu_time_ms >= start + 5000, 6000, on_telemetry=drive)
            factor = (emu.state().time_us - s0) / 1e6 / (time.monotonic() - t0)
            probes = emu.probes()
            received = mcu.last_telemetry()
        finally:
            mcu.close()
    assert received is not None
    isr = probes.isr[ENCODER_ISR]
    return [
        *control_rows(probes),
        ("emulator speed, driving", f"{factor:.1f}x", "DRIVE per TELEMETRY, tracks moving"),
        ("encoder ISR body", f"{isr.mean:,.1f} cyc",
         f"min {isr.min}, max {isr.max}; {isr.count:,} edges"),
        ("receive one DRIVE frame (10 B)", f"{probes.main[RX].total / max(1, drives):,.0f} cyc",
         f"on_rx_bytes over its bytes: decode + dispatch; {drives} frames"),
    ]  # fmt: skip


def control_rows(probes: Probes) -> list[Row]:
    tick = probes.main[CONTROL]
    nominal = F_CPU // CONTROL_HZ
    jitter = max(tick.max_period - nominal, nominal - tick.min_period)
    return [
        ("control tick rate", f"{F_CPU / tick.mean_period:.3f} Hz",
         f"{tick.periods:,} periods of nominal {nominal:,} cyc"),
        ("control tick jitter (worst)", f"{jitter:,} cyc",
         f"{jitter / 16:.1f} us; period {tick.min_period:,}..{tick.max_period:,} cyc"),
        ("control tick cost", f"{tick.mean:,.0f} cyc",
         f"max {tick.max:,} cyc = {100 * tick.max / nominal:.1f}% of the period"),
    ]  # fmt: skip


def _reached(mcu_time_ms: int) -> Callable[[Telemetry], bool]:
    return lambda t: t.mcu_time_ms >= mcu_time_ms


def telemetry_rate_phase() -> list[Row]:
    rows: list[Row] = []
    best = 0
    with board(speed=1.0) as emu:
        mcu = Mcu.open(emu.port)
        try:
            mcu.handshake()
            for hz in TELEMETRY_RATES_HZ:
                mcu.set_param(ParamId.telemetry_hz, hz)
                first = mcu.telemetry()
                dropped0, gaps0 = first.tx_dropped, mcu.decoder.rx_dropped
                frames: list[Telemetry] = []

                def collect(t: Telemetry, frames: list[Telemetry] = frames) -> None:
                    if frames and t.mcu_time_ms // 500 != frames[-1].mcu_time_ms // 500:
                        mcu.send(Heartbeat(t.mcu_time_ms))  # keeps the session open
                    frames.append(t)

                end_ms = first.mcu_time_ms + RATE_WINDOW_MS
                mcu.until(_reached(end_ms), RATE_WINDOW_MS + 500, on_telemetry=collect)
                last = frames[-1]
                gaps = mcu.decoder.rx_dropped - gaps0
                tx_dropped = last.tx_dropped - dropped0
                got_hz = (len(frames) - 1) * 1000 / (last.mcu_time_ms - frames[0].mcu_time_ms)
                ok = gaps == 0 and tx_dropped == 0 and got_hz >= 0.95 * hz
                best = hz if ok and hz > best else best
                link = got_hz * 43 / 11764 * 100  # 43 B per frame; 117647 baud / 10 bits
                notes = f"seq gaps {gaps}, tx_dropped {tx_dropped}, {link:.0f}% of the link"
                rows.append((f"telemetry at {hz} Hz", f"{got_hz:.1f} Hz", notes))
        finally:
            mcu.close()
    return [*rows, ("max telemetry rate, no frame lost", f"{best} Hz", "at 115200 baud (U2X)")]


def main() -> None:
    build()
    rows: list[Row] = [*sizes(), *idle_phase(), *driving_phase(), *telemetry_rate_phase()]
    header: Row = ("metric", "value", "notes")
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for index, row in enumerate(table):
        print(row[0].ljust(widths[0]), row[1].rjust(widths[1]), " ", row[2])
        if index == 0:
            print("-" * (sum(widths) + 4))
    for metric, value, _notes in rows:
        if metric in HEADLINES:
            record("firmware (emulated ATmega2560)", metric, value)


if __name__ == "__main__":
    main()
