"""Data locations and the outputs this project owns: where a path lives, claiming and atomically
replacing an output folder, the monitoring table.
"""
