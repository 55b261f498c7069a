"""Fixtures of the onboard tests: the emulated board (``board``, ``board_config``,
``link_config``) now lives in tests/conftest.py, shared with tests/host.

The builds are fixtures of tests/conftest.py (the same make fragments as CI). The board's
UART is symlinked at ``tmp_path/zima-mcu``, as udev links /dev/zima-mcu on the robot.
"""
