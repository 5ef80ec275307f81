"""Every file vllm-dev writes: where it lives (layout.py) and how a record is read and written
(records.py), plus the build dir's own record (build_record.py)."""
