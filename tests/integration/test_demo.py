"""`make demo`'s scenario runs end to end and shows the seed's fixed addresses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "demo" / "seed.py"


def test_demo_passes_and_reports_the_fixed_addresses():
    proc = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "inet 10.188.0.219/16" in proc.stdout
    assert "inet 10.188.0.218/16" in proc.stdout
    assert "net1 before: 10.188.0.219, after: 10.188.0.219" in proc.stdout
    assert "0% packet loss" in proc.stdout
    assert "seed verification passed" in proc.stdout
