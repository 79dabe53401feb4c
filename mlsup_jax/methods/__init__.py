"""One file per method: its `Method`, composed from `nn/`, `losses/` and `core/`."""
