"""The robot computer's asyncio runtime: MCU link, cameras, policy, safety, telemetry.

The MCU link, in reading order: ``link`` (``McuLink``, the async context manager the
runtime uses: a thin asyncio driver), ``link_config`` (``LinkConfig``), ``link_errors``
(the exception tree), ``mcu_state`` (``McuState``, ``LinkStatus``), ``watch`` (latest
value + waiting), ``link_session`` (``HostSession``: the protocol as a pure state machine,
bytes and time in, bytes and events out), ``link_events`` (what the session reports),
``link_requests`` (requests awaiting their answer), ``link_io`` (the port on the event
loop), ``serial_port`` (the one hardware seam: pyserial).
"""
