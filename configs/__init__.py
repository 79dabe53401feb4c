"""Method configs: `configs/<method>.py` defines `get_config(arg=None)`."""
