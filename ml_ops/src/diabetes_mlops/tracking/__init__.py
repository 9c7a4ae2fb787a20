"""MLflow adapters: tracked runs, the model registry, reference profiles and the artifacts a
run logs.
"""
