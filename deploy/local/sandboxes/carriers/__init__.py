"""The carrier simulator (`simulator.py`) and the scripts it drives accepted orders by (`scenarios.py`)."""
