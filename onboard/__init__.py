"""The robot computer's asyncio runtime: MCU link, cameras, policy, safety, telemetry."""
