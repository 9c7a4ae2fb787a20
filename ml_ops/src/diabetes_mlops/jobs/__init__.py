"""The job specs: their model and fields, control tasks, notebooks, deploy.yml targets, and the
checks made before a job starts.
"""
