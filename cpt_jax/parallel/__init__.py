"""Device mesh (mesh.py), logical-axis sharding rules (rules.py) and the multi-process runtime."""
