"""The benchmark: ``python3 bench/run.py``; its manual is bench/README.md."""
