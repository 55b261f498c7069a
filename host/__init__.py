"""The operator's tools: battery monitor, flashing, deploy, status and e-stop."""
