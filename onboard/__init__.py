"""The robot computer's asyncio runtime: MCU link, cameras, policy, safety, telemetry.

The MCU link, in reading order: ``link`` (``McuLink``, the async context manager the
runtime uses), ``link_config`` (``LinkConfig`` and the exception tree), ``mcu_state``
(``McuState``, ``LinkStatus``), ``watch`` (latest value + waiting), ``link_session``
(handshake, requests, reconnects), ``link_io`` (frames in and out), ``serial_port``
(the one hardware seam: pyserial).
"""
