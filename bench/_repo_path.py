"""Imported first by every bench script: the repository root goes on sys.path, bench/ comes off it.

Run as ``python bench/NAME.py``, bench/ is sys.path[0], and bench/tokenize.py would shadow the standard
library's ``tokenize`` module (which inspect, linecache and tracebacks import).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != HERE]
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
