"""Spark adapters: reading and checking input against the data contract, scoring, the monitor's
profile, training data.
"""
