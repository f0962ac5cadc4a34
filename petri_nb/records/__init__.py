"""What a run leaves behind: its timeline (one row per event), saved runs in Parquet with their
metadata, and the instruction counts that make a recorded run's rows seekable."""

from .persist import read_snapshots, read_timelines
from .timeline import Timeline

__all__ = ["Timeline", "read_snapshots", "read_timelines"]
